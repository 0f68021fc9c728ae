"""``bogctl`` entry point: make numba importable, build the parser, dispatch, map errors.

Only the standard library is imported at module level: ``main()`` first applies the numba
cache fallback, then imports the verb modules (which import bog's numba modules).
"""

from __future__ import annotations

import argparse
import os
import sys

VERB_MODULES = ("status", "local", "logs", "monitor", "control", "assets", "systemd", "venue")


def numba_cache_fallback() -> None:
    """Let bogctl import bog's numba modules as any user, from a read-only install.

    ``@njit(cache=True)`` fails at import ("no locator available") when neither the source
    tree's ``__pycache__`` nor the user's cache directory is writable - e.g. the installed
    venv run by an operator account, or ``nobody``. bogctl runs no kernel, so a private
    throw-away cache directory is enough.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    bog_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shm_dir = os.path.join(bog_dir, "shm")
    pycache = os.path.join(shm_dir, "__pycache__")
    if os.access(pycache if os.path.isdir(pycache) else shm_dir, os.W_OK):
        return
    import atexit
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="bogctl-numba-")
    os.environ["NUMBA_CACHE_DIR"] = d
    atexit.register(shutil.rmtree, d, True)


def default_config_path() -> str | None:
    """``$BOG_CONFIG``, else ``/etc/bog/bog.toml`` if it exists (the units' config), else None."""
    env = os.environ.get("BOG_CONFIG")
    if env:
        return env
    return "/etc/bog/bog.toml" if os.path.exists("/etc/bog/bog.toml") else None


def build_parser() -> argparse.ArgumentParser:
    """The parser of every verb (after ``numba_cache_fallback()``: it imports the verbs)."""
    import importlib

    import bog.ctl

    ap = argparse.ArgumentParser(prog="bogctl", description=bog.ctl.__doc__.split("\n\nOne module per concern")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--instance", default=os.environ.get("BOG_INSTANCE", "default"))
    common.add_argument("--config", help="the TOML config bog runs with (for ports); default "
                        "$BOG_CONFIG, else /etc/bog/bog.toml if present")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in VERB_MODULES:
        importlib.import_module(f"bog.ctl.{name}").register(sub, common)
    return ap


def main(argv: list[str] | None = None) -> int:
    numba_cache_fallback()  # before anything imports bog.shm's numba modules
    from bog.config import ConfigError, load_config
    from bog.ctl.common import EXIT_NOT_RUNNING, CtlError
    from bog.shm import segment as seg_mod

    args = build_parser().parse_args(argv)
    if args.cmd == "install-units":
        args.config_path = args.config or "/etc/bog/bog.toml"
    else:
        args.config_path = args.config or default_config_path()
    try:
        seg_mod.validate_instance(args.instance)
        cfg = load_config(args.config_path) if getattr(args, "needs_config", True) else None
        if cfg is not None:
            seg_mod.set_shm_owner(cfg.process.shm_owner)  # whose segments bogctl trusts
        return args.func(args, cfg)
    except CtlError as e:
        msg = str(e)
        print(msg if msg.startswith("bogctl") else f"bogctl {args.cmd}: {msg}", file=sys.stderr)
        return e.code
    except (ConfigError, seg_mod.SegmentError, ValueError) as e:
        print(f"bogctl {args.cmd}: {e}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except PermissionError as e:
        print(f"bogctl {args.cmd}: permission denied: {e.filename or e}: bog's shared memory, "
              "state and logs belong to the user bog runs as; run bogctl as that user "
              "(sudo -u bog bogctl ...) or as root", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `bogctl logs | head`: stop quietly, as grep does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
