"""The predict progress bar (rich): batches done, plus the current video and its frames per second."""

from __future__ import annotations

from lightning.pytorch.callbacks import RichProgressBar


class PredictProgressBar(RichProgressBar):
    """Lightning's rich bar whose description shows ``<video>: <frames> frames, <fps> frames/s``."""

    def show_video(self, name: str, frames: int, fps: float) -> None:
        """Update the description of the predict bar (called by the tracker callback per batch)."""
        if self.is_disabled or self.progress is None or self.predict_progress_bar_id is None:
            return
        self.progress.update(self.predict_progress_bar_id, description=f"{name}: {frames} frames, {fps:.1f} frames/s")
        self.refresh()
