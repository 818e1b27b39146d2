"""Every bundled component builds on a host holding only its own plugin and the plugins its
pyproject declares (plus stand-ins for the sections it needs but does not build itself):
a component builds others through the context it was given, never through the plugins
installed behind it."""

import functools
import sys
import tomllib

import numpy as np
import pytest
from PIL import Image
from support import ROOT

from ebmcore import KINDS, BuildContext, PluginError, PluginHost

sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "standins"))
import ebm_standins  # noqa: E402

PLUGINS = {d.name: tomllib.loads((d / "pyproject.toml").read_text())
           for d in sorted((ROOT / "plugins").iterdir()) if (d / "pyproject.toml").exists()}


def plugin_modules(dist: str) -> list[str]:
    """The entry-point modules of ``dist`` and of every bundled plugin it depends on, transitively."""
    seen, todo = [], [dist]
    while todo:
        d = todo.pop()
        if d in seen:
            continue
        seen.append(d)
        todo += [dep.split(">")[0].split("=")[0].strip() for dep in PLUGINS[d]["project"]["dependencies"]
                 if dep.split(">")[0].split("=")[0].strip() in PLUGINS]
    return [m for d in seen for m in PLUGINS[d]["project"].get("entry-points", {}).get("ebm", {}).values()]


@functools.cache
def isolated_host(dist: str) -> PluginHost:
    return PluginHost(plugin_modules(dist), autoload=False, plugins=[ebm_standins])


VECTORS = ("standin", {"shape": [2]})
IMAGES = ("standin", {"shape": [1, 8, 8]})
ENERGY = ("standin", {})
SAMPLER = ("standin", {})
NOISE = ("standin", {})
CHAINS = {"energy": ENERGY, "sampler": SAMPLER, "generator": NOISE}
SHAPES = ("shapes", {"res": 8, "n": 10, "heldout": 5})
POINTS = ("pointclouds", {"points": 16, "n": 10, "heldout": 5})
FIELD = ("point_field", {"point_layers": [4], "code": 4, "field_layers": [4]})
VOXELNET = ("voxelnet", {"channels": [4], "kernels": [4], "strides": [2]})
NAVIGATION = ("navigation", {"n": 4, "heldout": 2, "length": 4, "obstacles": 1})
TRACK = ("mocap", {"files": ["{tmp}/track.csv"], "csv_fps": 10.0, "fps": 5.0, "point_dims": 2, "up": None,
                   "past": 2, "future": 2, "stride": 2})
TILTED = ("tilted_flow", {"tilt": "standin", "flow_layers": 2, "flow_hidden": [8], "flow_steps": 2})

#: (kind, name) → the sections to build, in recipe order; tasks under "task"
CASES = {
    ("data", "toy2d"): {"data": ("toy2d", {"n_train": 100, "n_test": 50})},
    ("energy", "mlp"): {"data": VECTORS, "energy": ("mlp", {"hidden": [8]})},
    ("sampler", "langevin"): {"sampler": ("langevin", {})},
    ("sampler", "mala"): {"sampler": ("mala", {})},
    ("sampler", "hmc"): {"sampler": ("hmc", {})},
    ("sampler", "nuts"): {"sampler": ("nuts", {})},
    ("sampler", "annealed_langevin"): {"sampler": ("annealed_langevin", {})},
    ("sampler", "parallel_tempering"): {"sampler": ("parallel_tempering", {})},
    **{("generator", g): {"data": VECTORS, "generator": (g, {})}
       for g in ("uniform", "gaussian", "data", "fitted_gaussian")},
    # restarting from the fitted Gaussian builds generator 'fitted_gaussian' through the context
    ("generator", "replay_buffer"): {"data": VECTORS, "generator": ("replay_buffer", {"fresh": "fitted"})},
    ("objective", "mle"): {"data": VECTORS, **CHAINS, "objective": ("mle", {})},
    ("task", "generator_chains"): {"data": VECTORS, **CHAINS, "task": ("generator_chains", {})},
    ("objective", "masked_mle"): {"data": VECTORS, "energy": ENERGY, "sampler": SAMPLER,
                                  "objective": ("masked_mle", {})},
    ("data", "stripes"): {"data": ("stripes", {"size": 8, "n_train": 16})},
    ("energy", "multiscale"): {"data": ("standin", {"shape": [1, 16, 16]}),
                               "energy": ("multiscale", {"resolutions": [4, 16], "width": 4})},
    ("sampler", "multigrid"): {"sampler": ("multigrid", {})},
    ("sampler", "coarse_to_fine"): {"sampler": ("coarse_to_fine", {})},
    ("objective", "mle_multiscale"): {"data": ("standin", {"shape": [1, 16, 16]}),
                                      "energy": ("multiscale", {"resolutions": [4, 16], "width": 4}),
                                      "sampler": ("multigrid", {}), "generator": NOISE,
                                      "objective": ("mle_multiscale", {})},
    ("data", "digits"): {"data": ("digits", {})},
    ("data", "idx"): {"data": ("idx", {"images": "{tmp}/images.idx"})},
    ("data", "image_folder"): {"data": ("image_folder", {"root": "{tmp}/folder", "size": 8})},
    ("data", "texture"): {"data": ("texture", {"scale": 32, "size": 32, "n_crops": 4})},
    **{("energy", e): {"data": IMAGES, "energy": (e, {})} for e in ("swish_cnn", "genconvnet", "resnet")},
    ("energy", "frame"): {"data": ("standin", {"shape": [1, 16, 16]}), "energy": ("frame", {})},
    **{("task", t): {"data": IMAGES, **CHAINS, "task": (t, {"hole": 4} if t == "inpaint" else {})}
       for t in ("inpaint", "denoise", "ood")},
    ("task", "loglik"): {"data": VECTORS, "energy": ENERGY, "task": ("loglik", {})},
    ("task", "class_accuracy"): {"data": ("digits", {"conditional": True}), "task": ("class_accuracy", {})},
    ("objective", "jem"): {"data": ("digits", {"conditional": True}),
                           "energy": ("swish_cnn", {"hidden": 4, "condition": "label"}), "sampler": SAMPLER,
                           "generator": NOISE, "objective": ("jem", {})},
    ("task", "classify"): {"data": ("digits", {"conditional": True}),
                           "energy": ("swish_cnn", {"hidden": 4, "condition": "label"}), "task": ("classify", {})},
    ("generator", "mlp"): {"data": VECTORS, "generator": ("mlp", {})},
    ("generator", "deconv"): {"data": IMAGES, "generator": ("deconv", {"channels": 4})},
    ("generator", "unet"): {"data": IMAGES, "generator": ("unet", {"channels": 4})},
    ("objective", "coop"): {"data": VECTORS, "energy": ENERGY, "sampler": SAMPLER,
                            "generator": ("mlp", {}), "objective": ("coop", {})},
    ("objective", "coop_vae"): {"data": VECTORS, "energy": ENERGY, "sampler": SAMPLER,
                                "generator": ("mlp", {"encoder": True}), "objective": ("coop_vae", {})},
    ("task", "revision"): {"data": VECTORS, "task": ("revision", {})},
    ("objective", "triangle"): {"data": VECTORS, "energy": ENERGY, "sampler": SAMPLER,
                                "generator": ("mlp", {"encoder": True}), "objective": ("triangle", {})},
    ("task", "reconstruction"): {"data": VECTORS, "task": ("reconstruction", {})},
    ("energy", "level_mlp"): {"data": VECTORS, "energy": ("level_mlp", {})},
    ("energy", "level_cnn"): {"data": IMAGES, "energy": ("level_cnn", {})},
    ("objective", "drl"): {"data": VECTORS, "energy": ("level_mlp", {}), "sampler": SAMPLER,
                           "objective": ("drl", {})},
    ("energy", "latent_mlp"): {"energy": ("latent_mlp", {"latent_dim": 2})},
    ("energy", "latent_gaussian"): {"energy": ("latent_gaussian", {"latent_dim": 2})},
    ("objective", "latent_ebm"): {"data": VECTORS, "energy": ("latent_mlp", {"latent_dim": 2}),
                                  "generator": ("standin", {"latent_dim": 2}), "objective": ("latent_ebm", {})},
    ("objective", "abp"): {"data": VECTORS, "energy": ("latent_gaussian", {"latent_dim": 2}),
                           "generator": ("standin", {"latent_dim": 2}), "objective": ("abp", {})},
    ("task", "anomaly"): {"data": IMAGES, "task": ("anomaly", {})},
    **{("energy", e): {"data": IMAGES, "energy": (e, {"hidden": 4, "data_bias": False})}
       for e in ("rbm", "gaussian_rbm")},
    ("sampler", "gibbs"): {"sampler": ("gibbs", {})},
    ("task", "rbm_filters"): {"data": IMAGES, "energy": ("rbm", {"hidden": 4, "data_bias": False}),
                              "task": ("rbm_filters", {})},
    ("objective", "dbn"): {"data": IMAGES, "energy": ("rbm", {"hidden": 4, "data_bias": False}),
                           "sampler": ("gibbs", {}), "objective": ("dbn", {"hidden": [3]})},
    ("task", "dbn_bound"): {"data": IMAGES, "energy": ("rbm", {"hidden": 4, "data_bias": False}),
                            "sampler": ("gibbs", {}), "objective": ("dbn", {"hidden": [3]}),
                            "task": ("dbn_bound", {})},
    ("objective", "nce"): {"data": VECTORS, "energy": ENERGY, "sampler": SAMPLER, "objective": ("nce", {})},
    **{("objective", o): {"data": VECTORS, **CHAINS, "objective": (o, {})} for o in ("dsm", "ssm")},
    ("objective", "ncsn"): {"data": VECTORS, "energy": ("level_mlp", {}), "sampler": SAMPLER, "generator": NOISE,
                            "objective": ("ncsn", {})},
    ("sampler", "annealed_score_langevin"): {"sampler": ("annealed_score_langevin", {})},
    ("energy", "residual_cnn"): {"data": IMAGES, "energy": ("residual_cnn", {"channels": 4})},
    ("objective", "fce"): {"data": VECTORS, "energy": ENERGY, "objective": ("fce", {"flow_layers": 2})},
    ("energy", "tilted_flow"): {"data": VECTORS, "energy": TILTED},
    ("objective", "snis_mle"): {"data": VECTORS, "energy": TILTED, "objective": ("snis_mle", {"proposals": 8})},
    ("energy", "autoencoder"): {"data": IMAGES, "energy": ("autoencoder", {"channels": 2, "code": 2})},
    **{("objective", o): {"data": IMAGES, "energy": ("autoencoder", {"channels": 2, "code": 2}),
                          "generator": ("standin", {"latent_dim": 2}), "objective": (o, {})}
       for o in ("ebgan", "began", "magan")},
    ("data", "video"): {"data": ("video", {"path": "{tmp}/folder", "clip": 1, "heldout": 0.5, "size": [8, 8]})},
    ("data", "shapes"): {"data": SHAPES},
    ("data", "meshes"): {"data": ("meshes", {"path": "{tmp}/meshes", "res": 8, "heldout": 0.5})},
    ("energy", "voxelnet"): {"data": ("standin", {"shape": [1, 8, 8, 8]}), "energy": VOXELNET},
    **{("task", t): {"data": SHAPES, "energy": ENERGY, "sampler": SAMPLER, "task": (t, {})}
       for t in ("voxel_recover", "voxel_superres")},
    ("task", "voxel_probe"): {"data": SHAPES, "energy": VOXELNET, "task": ("voxel_probe", {})},
    ("data", "pointclouds"): {"data": POINTS},
    ("energy", "pointnet"): {"data": ("standin", {"shape": [16, 3]}),
                             "energy": ("pointnet", {"point_layers": [4], "head_layers": [4]})},
    ("task", "pointcloud_reconstruct"): {"data": POINTS, "energy": ENERGY, "sampler": SAMPLER, "generator": NOISE,
                                         "task": ("pointcloud_reconstruct", {})},
    ("energy", "point_field"): {"data": ("standin", {"shape": [16, 3]}), "energy": FIELD},
    ("objective", "point_completion_dsm"): {"data": POINTS, "energy": FIELD,
                                            "objective": ("point_completion_dsm", {})},
    ("data", "navigation"): {"data": NAVIGATION},
    ("data", "mocap"): {"data": TRACK},
    ("energy", "temporal_convnet"): {"data": ("standin", {"shape": [6, 5]}),
                                     "energy": ("temporal_convnet", {"channels": [4]})},
    ("energy", "scene_cost"): {"data": ("standin", {"shape": [6, 5]}),
                               "energy": ("scene_cost", {"channels": [4], "hidden": [4]})},
    ("objective", "conditional_mle"): {"data": NAVIGATION, "energy": ENERGY, "sampler": SAMPLER,
                                       "objective": ("conditional_mle", {})},
    ("objective", "retrieval_nce"): {"data": NAVIGATION, "energy": ENERGY, "objective": ("retrieval_nce", {"k": 1})},
    ("task", "forecast"): {"data": TRACK, "energy": ENERGY, "sampler": SAMPLER,
                           "task": ("forecast", {"horizons": [0.2]})},
    ("task", "plan"): {"data": NAVIGATION, "energy": ENERGY, "sampler": SAMPLER, "task": ("plan", {})},
    ("data", "photo"): {"data": ("photo", {"path": "{tmp}/folder/0.png", "size": 24})},
    ("energy", "patchgencn"): {"data": ("standin", {"shape": [1, 24, 24]}),
                               "energy": ("patchgencn", {"scales": 2, "width": 4, "layers": 2})},
    ("sampler", "patch_pyramid"): {"sampler": ("patch_pyramid", {"n_steps": 2})},
    ("objective", "mle_patch"): {"data": ("standin", {"shape": [1, 24, 24]}),
                                 "energy": ("patchgencn", {"scales": 2, "width": 4, "layers": 2}),
                                 "sampler": ("patch_pyramid", {"n_steps": 2}), "generator": ("uniform", {}),
                                 "objective": ("mle_patch", {})},
    **{("task", t): {"data": ("standin", {"shape": [1, 24, 24]}),
                     "energy": ("patchgencn", {"scales": 2, "width": 4, "layers": 2}),
                     "sampler": ("patch_pyramid", {"n_steps": 2}), "task": (t, {})}
       for t in ("patch_synthesis", "patch_inpaint")},
    ("data", "moving_digits"): {"data": ("moving_digits", {"n": 2, "heldout": 2})},
    ("energy", "stconvnet"): {"data": ("standin", {"shape": [1, 4, 8, 8]}), "energy": ("stconvnet", {})},
    ("task", "recover"): {"data": ("moving_digits", {"n": 2, "heldout": 2}), "energy": ENERGY, "sampler": SAMPLER,
                          "task": ("recover", {})},
    ("energy", "clip_field"): {"data": ("standin", {"shape": [1, 4, 8, 8]}),
                               "energy": ("clip_field", {"channels": [4]})},
    ("objective", "clip_completion_dsm"): {"data": ("moving_digits", {"n": 2, "heldout": 2}),
                                           "energy": ("clip_field", {"channels": [4]}),
                                           "objective": ("clip_completion_dsm", {})},
}


def _files(tmp):
    """What the file-reading data sets of the cases read: an IDX file, a folder of PNGs, two
    closed meshes (a training and a held-out one) and a CSV track."""
    images = np.zeros((4, 8, 8), dtype=np.uint8)
    header = bytes([0, 0, 0x08, 3]) + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    (tmp / "images.idx").write_bytes(header + images.tobytes())
    (tmp / "folder").mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(tmp / "folder" / f"{i}.png")
    (tmp / "meshes").mkdir()
    tetrahedron = "OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n"
    for i in range(2):
        (tmp / "meshes" / f"{i}.off").write_text(tetrahedron)
    (tmp / "track.csv").write_text("\n".join(f"{0.1 * t},{0.0},{0.1 * t + 1},{0.5}" for t in range(40)) + "\n")


def _in_tmp(value, tmp):
    """A setting with ``{tmp}`` in its strings (or a list's) made a path in ``tmp``."""
    if isinstance(value, str):
        return value.format(tmp=tmp)
    if isinstance(value, list):
        return [_in_tmp(v, tmp) for v in value]
    return value


def build_case(host: PluginHost, sections: dict, tmp) -> dict:
    ctx = BuildContext(registry=host.registry)
    for kind in (*KINDS, "task"):
        if kind not in sections:
            continue
        name, settings = sections[kind]
        settings = {k: _in_tmp(v, tmp) for k, v in settings.items()}
        ctx.built[kind] = ctx.build(kind, name, **settings)
        if kind == "data":
            ctx.event_shape, ctx.num_classes = tuple(ctx.built[kind].event_shape), ctx.built[kind].num_classes
    return ctx.built


@functools.cache
def owners() -> dict[tuple[str, str], str]:
    """(kind, name) → the bundled distribution that provides it."""
    return {(e.component.kind, e.component.name): d
            for d in PLUGINS for e in PluginHost(plugin_modules(d)[:1], autoload=False).registry}


def test_every_bundled_component_has_a_case():
    assert set(owners()) == set(CASES)


@pytest.mark.parametrize(("kind", "name"), sorted(CASES), ids=lambda v: v)
def test_builds_on_its_plugins_host(kind, name, tmp_path):
    _files(tmp_path)
    dist = owners()[kind, name]
    built = build_case(isolated_host(dist), CASES[kind, name], tmp_path)
    assert kind in built


def test_a_nested_build_uses_the_contexts_registry(tmp_path):
    """latent_mlp builds ebm-toy's 'mlp' by name: on a host with ebm-latent and its declared
    plugins it works; on one without ebm-toy it fails naming 'mlp', whatever is installed."""
    sections = CASES["energy", "latent_mlp"]
    assert build_case(isolated_host("ebm-latent"), sections, tmp_path)["energy"].latent_dim == 2
    alone = PluginHost(["ebm_latent"], autoload=False)
    with pytest.raises(PluginError, match="unknown energy 'mlp'"):
        build_case(alone, sections, tmp_path)
