"""The asset commands (entry-point floor): ``python -m phalp_lightning.assets`` (:mod:`.command`), the
content checks that build networks to test weight files (:mod:`.checks`), the downloader
(:mod:`.download`) and what predict/train fetch before a run (:mod:`.for_run`). The registry they
serve (``resolve``, the missing-file error, where files live) is :mod:`phalp_lightning.assets`.
"""
