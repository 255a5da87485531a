"""Model building (by name, see :mod:`training.models.zoo`) and pretrained loading."""
from training.models.ppocr_adapter import is_deploy_form, to_deploy_form
from training.models.pretrained import LoadReport, PretrainedError, load_pretrained
from training.models.zoo import ARCHS, arch_task, build_model

__all__ = ["ARCHS", "arch_task", "build_model", "load_pretrained", "LoadReport", "PretrainedError",
           "to_deploy_form", "is_deploy_form"]
