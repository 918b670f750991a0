"""Tracking metrics (HOTA, MOTA, IDF1) and their loaders and loggers.

Import from the submodules (this package imports nothing on purpose):

- ``evaluation.sequences``: ``TrackSequence`` (boxes of one video), ``SequenceData`` (TrackEval-style
  per-timestep ids and IoUs), ``build_sequence_data``.
- ``evaluation.evaluator``: ``evaluate_sequences(predictions, ground_truth, protocol) -> EvaluationResult``.
- ``evaluation.protocol``: ``EvaluationProtocol`` (standard / PHALP matching and aggregation).
- ``evaluation.hota``: own vectorised HOTA (equals TrackEval's); ``evaluation.clear``: motmetrics CLEAR/Identity.
- ``evaluation.metric``: ``MOTMetrics`` torchmetrics Metric; ``evaluation.reporting``: W&B / CSV logging.
- ``evaluation.loading``: read MOT / PoseTrack / PHALP result files into ``TrackSequence`` s.
"""
