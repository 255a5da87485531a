"""Hydra entry-point plumbing shared by ``python -m training.det`` and ``python -m training.rec``.

Hydra's own error output for a bad override is a stack trace or several lines; users asked for one line.
So the overrides are composed once with the compose API first, and any config problem — an unknown key, a
missing mandatory value such as ``data.train.root`` — is reported as a single ``config error:`` line (exit 2)
before Hydra starts the run. Errors we raise while running (bad data, unusable weights) are printed the
same way, unless ``OCR_DEBUG=1`` asks for the traceback.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

__all__ = ["CONF_DIR", "UserError", "run_entry", "precheck_overrides", "missing_keys"]

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class UserError(Exception):
    """A problem the user can fix (config, data, weights): printed as one line, exit code 2."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    parts = [line.strip() for line in text if line.strip() and not line.startswith(("full_key", "object_type", "    "))]
    return " — ".join(parts[:2]) if parts else type(exc).__name__


def _user_overrides(argv: list[str]) -> list[str]:
    """Config overrides from the command line (Hydra's own flags and ``hydra.*`` keys excluded)."""
    out, skip_next = [], False
    for arg in argv:
        if skip_next:
            skip_next = False
            continue
        if arg in ("--cfg", "-c", "--package", "-p", "--config-name", "-cn", "--config-path", "-cp",
                   "--config-dir", "-cd", "--info", "-i"):
            skip_next = arg not in ("--info", "-i")
            continue
        if arg.startswith("-") or arg.startswith(("hydra.", "hydra/", "+hydra")) or "=" not in arg:
            continue
        out.append(arg)
    return out


def missing_keys(cfg: DictConfig) -> list[str]:
    """Dotted keys still set to ``???``."""
    return sorted(OmegaConf.missing_keys(cfg))


def precheck_overrides(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose the config like Hydra will; raise :class:`UserError` with one line on any config problem."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
    except Exception as exc:  # noqa: BLE001 -- hydra/omegaconf raise many types for bad overrides
        raise UserError(f"config error: {_one_line(exc)}") from None
    finally:
        GlobalHydra.instance().clear()
    return cfg


def _wants_only_config(argv: list[str]) -> bool:
    return any(a in ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i") for a in argv)


def run_entry(config_name: str, task_fn: Callable[[DictConfig], object]) -> None:
    """Run ``task_fn`` under ``@hydra.main`` with one-line errors for everything the user can fix."""
    import hydra

    argv = sys.argv[1:]
    debug = os.environ.get("OCR_DEBUG") == "1"
    try:
        cfg = precheck_overrides(config_name, _user_overrides(argv))
        if not _wants_only_config(argv):
            missing = missing_keys(cfg)
            if missing:
                example = "/path/to/data" if missing[0].endswith(".root") else "..."
                raise UserError(f"config error: {', '.join(missing)} must be set (e.g. {missing[0]}={example})")
    except UserError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(2)

    @hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")
    def _main(cfg: DictConfig) -> None:
        try:
            task_fn(cfg)
        except UserError as exc:
            if debug:
                raise
            print(str(exc), file=sys.stderr)
            sys.exit(2)
        except Exception as exc:  # noqa: BLE001
            # our own typed errors (dataset/pretrained/charset) are user-fixable: one line, exit 2
            if debug or not _is_user_fixable(exc):
                raise
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    _main()


def _is_user_fixable(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"DatasetError", "PretrainedError", "CharsetError", "FileNotFoundError", "ConfigError",
                         "NonFiniteLossError", "QuantConfigError", "CheckpointError"})
