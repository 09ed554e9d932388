"""Physical properties from images: Wu & Boada (2019) CNN and Dobbels et al. (2019) CNN+LightGBM.

Modules: ``survey`` (simulated labelled gri survey), ``data`` (labelled sets from a survey or a
user's table), ``byo`` (reading and checking a user's table), ``cnn`` (residual CNN training,
test-time augmentation, features), ``gbm`` (LightGBM stage, baselines, importances),
``evaluate`` (metrics and reports), ``pipelines`` (end-to-end runs that write bundles), ``cli``.
"""
