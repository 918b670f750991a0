"""Track people in videos: ``python predict.py video=<file or folder> [ckpt=<hmar checkpoint>]``."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    from phalp_lightning.errors import run_reporting_user_errors
    from phalp_lightning.pipelines.predict import run

    # Errors the user can fix print one line and exit 2; anything else keeps its traceback.
    run_reporting_user_errors(run, cfg)


if __name__ == "__main__":
    main()
