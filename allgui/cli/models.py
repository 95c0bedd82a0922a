"""`allgui models list|show|activate|import`: the shipped and user models, one active."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list, inspect, activate and import models")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="list shipped and user models (* marks the active one)")
    show = actions.add_parser("show", help="what a model is and how well it did on held-out images")
    show.add_argument("model", metavar="ID", help="model id or model folder")
    show.add_argument("--json", action="store_true", help="print the whole manifest as JSON instead")
    activate = actions.add_parser("activate", help="make a model the active one")
    activate.add_argument("model", metavar="ID")
    imported = actions.add_parser("import", help="verify a model folder and add it to the user's models")
    imported.add_argument("folder", metavar="DIR")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from allgui.cli.main import UsageError
    from allgui.core.models.store import ModelActivationError, ModelLoadError, ModelNotFoundError, ModelStore
    from allgui.core.models.summary import summary_rows

    store = ModelStore()
    try:
        if args.action == "list":
            return _list(store)
        if args.action == "show":
            from allgui.core.models.store import read_manifest

            folder = store.resolve(args.model)
            manifest = read_manifest(folder)
            if args.json:
                print(json.dumps(manifest, indent=2, ensure_ascii=False))
                return 0
            rows = [*summary_rows(manifest), ("Folder", str(folder))]
            width = max(len(label) for label, _ in rows)
            print("\n".join(f"{label + ':':<{width + 1}} {text}" for label, text in rows))
            return 0
        if args.action == "activate":
            loaded = store.activate(args.model)
            if store.unsaved_reason:
                raise UsageError(f"{store.unsaved_reason}; the active model is unchanged")
            print(f"active model: {loaded.id} ({loaded.title})")
            return 0
        info = store.import_folder(args.folder)
        print(f"imported {info.id} ({info.title}) into {info.folder}")
        return 0
    except (ModelNotFoundError, ModelActivationError) as error:
        raise UsageError(str(error)) from None
    except ModelLoadError as error:
        print(f"allgui models {args.action}: refused: {error}", file=sys.stderr)
        return 1


def _list(store: object) -> int:
    from allgui.core.models.store import ModelStore
    from allgui.core.models.summary import held_out_accuracy

    assert isinstance(store, ModelStore)
    models = store.list()
    if not models:
        print("no models yet: train one with `allgui train` or import one with `allgui models import`")
        return 0
    active = store.active_id()
    print(f"  {'id':<34} {'kind':<15} {'source':<8} {'created':<26} {'accuracy':>8}  title")
    for m in models:
        accuracy = held_out_accuracy(m.manifest)
        shown = "-" if accuracy is None else f"{100 * accuracy:.1f}%"
        note = "" if m.offered else "  (comparison only)"
        mark = "*" if m.id == active else " "
        print(f"{mark} {m.id:<34} {m.kind:<15} {m.source:<8} {m.created:<26} {shown:>8}  {m.title}{note}")
    return 0
