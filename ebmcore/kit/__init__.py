"""The kit: what plugins may share, built on the contract (:mod:`ebmcore`).

- :mod:`~ebmcore.kit.conformance`: the checks every sampler passes on known targets;
- :mod:`~ebmcore.kit.diagnostics`: autocorrelation, effective sample size, AUROC;
- :mod:`~ebmcore.kit.metrics`: MMD², a fitted Gaussian, and the yardsticks every score
  stands beside (held-out data, noise, the fitted Gaussian);
- :mod:`~ebmcore.kit.pictures`: image grids, 2-D scatter and density figures;
- :mod:`~ebmcore.kit.masks`: missing regions and the completion condition;
- :mod:`~ebmcore.kit.losses`: the maximum-likelihood loss;
- :mod:`~ebmcore.kit.latent`: Langevin in a latent space;
- :mod:`~ebmcore.kit.replicas`: refusing a sampler's auxiliary rows where they would be taken as samples;
- :mod:`~ebmcore.kit.streaming`: a training set decoded from disk batch by batch by worker processes.
"""
