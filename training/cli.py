"""Hydra entry-point plumbing shared by ``python -m training.det`` and ``python -m training.rec``.

Hydra's own error output for a bad override is a stack trace or several lines; users asked for one line.
So the overrides are composed once with the compose API first, and any config problem — an unknown key, a
missing mandatory value such as ``data.train.root``, a value of the wrong type or out of range
(``training.config_schema``) — is reported as a single ``config error:`` line (exit 2) before Hydra starts
the run and before any model or data loads. Multirun (``-m``) sweeps are checked value by value; Hydra's own
modes (``-sc install=bash``, ``--help``) pass straight through. Errors we raise while running (bad data,
unusable weights) are printed the same way, unless ``OCR_DEBUG=1`` asks for the traceback.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from training.diskspace import free_space, probe_write

__all__ = ["CONF_DIR", "UserError", "run_entry", "precheck_overrides", "missing_keys"]

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class UserError(Exception):
    """A problem the user can fix (config, data, weights): printed as one line, exit code 2."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    parts = [line.strip() for line in text if line.strip() and not line.startswith(("full_key", "object_type", "    "))]
    return " — ".join(parts[:2]) if parts else type(exc).__name__


#: Hydra flags that take a value (the next argument)
_FLAGS_WITH_VALUE = ("--cfg", "-c", "--package", "-p", "--config-name", "-cn", "--config-path", "-cp",
                     "--config-dir", "-cd", "--shell-completion", "-sc", "--experimental-rerun")
#: flags after which Hydra does not compose or run a task: nothing to pre-check
_NO_TASK_FLAGS = ("--shell-completion", "-sc", "--help", "-h", "--hydra-help", "--version", "--experimental-rerun")


#: Hydra's run modes, of which one command line may use only one
_MODES = {"-m": "--multirun", "--multirun": "--multirun", "--cfg": "--cfg", "-c": "--cfg", "--info": "--info",
          "-i": "--info", "-sc": "--shell-completion", "--shell-completion": "--shell-completion", "-r": "--run",
          "--run": "--run"}


def _user_overrides(argv: list[str]) -> list[str]:
    """Config overrides from the command line (Hydra's own flags and ``hydra.*`` keys excluded)."""
    out, skip_next = [], False
    for arg in argv:
        if skip_next:
            skip_next = False
            continue
        if arg in _FLAGS_WITH_VALUE:
            skip_next = True
            continue
        if arg.startswith("-") or arg.startswith(("hydra.", "hydra/", "+hydra", "++hydra")) or "=" not in arg:
            continue
        out.append(arg)
    return out


def _is_multirun(argv: list[str]) -> bool:
    return any(a in ("-m", "--multirun") for a in argv)


def missing_keys(cfg: DictConfig) -> list[str]:
    """Dotted keys still set to ``???``."""
    return sorted(OmegaConf.missing_keys(cfg))


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides)
    except Exception as exc:  # noqa: BLE001 -- hydra/omegaconf raise many types for bad overrides
        raise UserError(f"config error: {_one_line(exc)}") from None
    finally:
        GlobalHydra.instance().clear()


def _parse(overrides: list[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"config error: {_one_line(exc)}") from None


def _is_group(name: str) -> bool:
    """``experiment``, ``model/det`` … are config groups (folders in conf/), not keys."""
    return (CONF_DIR / name.replace(".", "/")).is_dir()


def _key_additions(parsed: list) -> list:
    return [o for o in parsed if (o.is_add() or o.is_force_add()) and not _is_group(o.key_or_group)]


def _sweep_values(override) -> list[str]:
    """The values a sweep override stands for (intervals: their ends; glob sweeps: none, Hydra checks them)."""
    from hydra.core.override_parser.types import IntervalSweep

    value = override.value()
    if isinstance(value, IntervalSweep):
        return [str(value.start), str(value.end)]
    try:
        return list(override.sweep_string_iterator())
    except Exception:  # noqa: BLE001 -- glob(...) needs Hydra's config loader
        return []


#: root keys a user may add with ``+key=`` although no config file declares them (read by training.runner)
_ROOT_EXTRAS = {"run_dir"}


def _check_values(cfg: DictConfig, parsed: list, base: DictConfig | None) -> None:
    from training.config_schema import CLOSED_SECTIONS, EXTRA_KNOWN, unknown_keys, validate

    problem = validate(cfg)
    if problem is None and base is not None:
        reference = {s: [*base[s], *EXTRA_KNOWN.get(s, ())] for s in CLOSED_SECTIONS
                     if s in base and OmegaConf.is_dict(base[s])}
        problem = unknown_keys(cfg, reference)
        if problem is None:
            added = [o.key_or_group for o in _key_additions(parsed) if o.is_add() and "." not in o.key_or_group]
            root_new = [k for k in added if k not in base and k not in _ROOT_EXTRAS]
            if root_new:
                problem = unknown_keys(cfg, {"": [*base.keys(), *_ROOT_EXTRAS]})
    if problem:
        raise UserError(f"config error: {problem}")


def precheck_overrides(config_name: str, overrides: list[str], multirun: bool = False) -> DictConfig:
    """Compose the config like Hydra will and check types, ranges and unknown keys; raise
    :class:`UserError` with one line on any problem. With ``multirun`` every value of every sweep is
    checked (intervals at their ends), so a bad value fails the sweep before its first job."""
    parsed = _parse(overrides)
    sweeps = [o for o in parsed if o.is_sweep_override()] if multirun else []
    first: dict[int, str] = {}
    for o in sweeps:
        values = _sweep_values(o)
        if values:
            first[id(o)] = f"{o.get_key_element()}={values[0]}"
    plain = [first.get(id(o), o.input_line) for o in parsed if not (o.is_sweep_override() and id(o) not in first)]
    cfg = _compose(config_name, plain)
    additions = {o.input_line for o in _key_additions(parsed)}
    base = _compose(config_name, [x for x in plain if x not in additions]) if additions else cfg
    _check_values(cfg, parsed, base)
    for o in sweeps:
        key = o.get_key_element().lstrip("+")
        for value in _sweep_values(o)[1:]:
            if _is_group(o.key_or_group):
                variant = _compose(config_name, [f"{o.get_key_element()}={value}" if x == first[id(o)] else x
                                                 for x in plain])
            else:
                variant = cfg.copy()
                try:
                    parsed_value = _parse([f"{key}={value}"])[0].value()
                    OmegaConf.update(variant, key, parsed_value, force_add=True)
                except UserError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    raise UserError(f"config error: {key}={value}: {_one_line(exc)}") from None
            _check_values(variant, parsed, None)
    return cfg


def check_run_dir_writable(config_name: str, argv: list[str]) -> None:
    """Hydra writes ``.hydra/`` and its log into the run dir before the task starts, so a read-only or full disk
    there ended in Hydra's traceback. Probe the dir first: one line naming it, the reason and the space left."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=[a for a in argv if "=" in a and not a.startswith("-")],
                          return_hydra_config=True)
        run_dir = Path(str(cfg.hydra.run.dir))
    except Exception:  # noqa: BLE001 -- the pre-check above reports config problems; Hydra will too
        return
    finally:
        GlobalHydra.instance().clear()
    try:
        probe_write(run_dir)
    except OSError as exc:
        raise UserError(f"cannot write the run directory {run_dir} (hydra.run.dir): "
                        f"{exc.strerror or exc}; {free_space(run_dir)} free on that disk") from None


def _wants_only_config(argv: list[str]) -> bool:
    return any(a in ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i") for a in argv)


def _objective(result: object) -> float | None:
    """The number a sweeper optimises: the best eval metric of a training run, the metric of ``mode=eval``."""
    if not isinstance(result, dict):
        return None
    for key in ("best_metric", "hmean", "acc"):
        value = result.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def run_entry(config_name: str, task_fn: Callable[[DictConfig], object]) -> None:
    """Run ``task_fn`` under ``@hydra.main`` with one-line errors for everything the user can fix.

    The Hydra task returns the run's eval metric (:func:`_objective`), so sweepers such as Optuna can
    optimise it; in a multirun each job also leaves ``sweep_result.json`` for the sweep's MLflow parent run
    (``training.hydra_callbacks``)."""
    import hydra

    argv = sys.argv[1:]
    debug = os.environ.get("OCR_DEBUG") == "1"
    modes = {_MODES[a] for a in argv if a in _MODES}
    if len(modes) > 1:  # Hydra refuses this with a traceback
        print(f"command line: {' and '.join(sorted(modes))} cannot be combined (one of --run, --multirun, --cfg, "
              "--info, --shell-completion at a time)", file=sys.stderr)
        sys.exit(2)
    if not any(a in _NO_TASK_FLAGS for a in argv):
        try:
            cfg = precheck_overrides(config_name, _user_overrides(argv), multirun=_is_multirun(argv))
            if not _wants_only_config(argv):
                missing = missing_keys(cfg)
                if cfg.get("mode") == "eval":  # evaluating reads only data.eval
                    missing = [k for k in missing if not k.startswith("data.train.")]
                if missing:
                    example = "/path/to/data" if missing[0].endswith(".root") else "..."
                    raise UserError(f"config error: {', '.join(missing)} must be set (e.g. {missing[0]}={example})")
                if not _is_multirun(argv):
                    check_run_dir_writable(config_name, argv)
        except UserError as exc:
            print(str(exc), file=sys.stderr)
            sys.exit(2)

    @hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")
    def _main(cfg: DictConfig) -> float | None:
        from training.config_schema import validate

        try:
            problem = validate(cfg)  # sweepers (Optuna) pick values the pre-check never saw
            if problem:
                raise UserError(f"config error: {problem}")
            result = task_fn(cfg)
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
        objective = _objective(result)
        _record_sweep_job(result, objective, {"det": "hmean", "rec": "acc"}.get(str(cfg.get("task"))))
        return objective

    _main()


def _record_sweep_job(result: object, objective: float | None, metric: str | None) -> None:
    """In a multirun, write the job's metric and MLflow run id beside its outputs, for the sweep callback."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        hc = HydraConfig.get()
    except ValueError:
        return
    if hc.mode != RunMode.MULTIRUN:
        return
    from training.hydra_callbacks import write_job_result

    write_job_result(Path(hc.runtime.output_dir), int(hc.job.num), list(hc.overrides.task), objective,
                     metric, result if isinstance(result, dict) else {})


def _is_user_fixable(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"DatasetError", "PretrainedError", "CharsetError", "FileNotFoundError", "ConfigError",
                         "NonFiniteLossError", "QuantConfigError", "CheckpointError"})
