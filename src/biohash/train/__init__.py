"""Training, evaluation and export (torch): data/ (adapters, synthetic, ROI, protocols, loaders), models/,
losses, recipes/ (base + one module per method), the fit loop (fit, fit_config), jobs (train_job,
quantize_job, eval_run, pretrain), evaluate, report (plots), export, runs (run folders), zoo/ (shipped weights).

This package's __init__ imports nothing, so reading a run's config (train.runs) does not pull in torch.
"""
