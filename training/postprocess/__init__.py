"""Post-processing shared by training-time evaluation and the exported models (``export/``).

Pure numpy / OpenCV / pyclipper / shapely — no Paddle import — so the serving path and the evaluation of
record run exactly this code."""
from training.postprocess.boxes import filter_det_boxes, order_points_clockwise
from training.postprocess.ctc import BLANK_INDEX, ctc_greedy_decode
from training.postprocess.db import DBPostProcess, DetResult

__all__ = ["DBPostProcess", "DetResult", "ctc_greedy_decode", "BLANK_INDEX", "filter_det_boxes",
           "order_points_clockwise"]
