"""Datasets for phalp_lightning: format readers, shard builders and LightningDataModules.

Installed as ``phalp_lightning.datamodules``. Importing it loads nothing heavy.
"""
