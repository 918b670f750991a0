"""Train HMAR or the pose transformer: ``python train.py model=hmar`` / ``model=pose_transformer``."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    from phalp_lightning.errors import run_reporting_user_errors
    from phalp_lightning.pipelines.train import run

    # Errors the user can fix print one line and exit 2; anything else keeps its traceback.
    run_reporting_user_errors(run, cfg)


if __name__ == "__main__":
    main()
