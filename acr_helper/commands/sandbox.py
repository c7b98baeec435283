"""`acr-helper sandbox`: run the controller against a local fake cluster and cloud emulator."""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from acr_helper.runtime import configure_logging
from acr_helper.sandbox import Sandbox, SandboxOptions


def _read(path: str | None) -> str | None:
    if path is None:
        return None
    return pathlib.Path(path).read_text()


def main(args: argparse.Namespace) -> int:
    configure_logging(args.log_format, args.log_level)
    try:
        options = SandboxOptions(
            workdir=pathlib.Path(args.dir),
            config_text=_read(args.config),
            state_text=_read(args.state),
            api_port=args.api_port,
            metrics_bind_address=args.metrics_bind_address,
            token_lifetime=args.token_lifetime,
        )
    except OSError as exc:
        print(f"acr-helper sandbox: {exc}", file=sys.stderr)
        return 2
    box = Sandbox(options)
    try:
        box.start_fakes()
        box.start_controller(once=args.once)
        if args.once:
            box.wait(120)
            print(box.report())
            return box.exit_code if box.exit_code is not None else 1
        assert box.api is not None and box.emulator is not None
        time.sleep(0.5)
        print(f"fake API server:   {box.api.url}")
        print(f"cloud emulator:    {box.emulator.url}")
        print(f"metrics:           {box.metrics_url}/metrics")
        print(f"look with kubectl: kubectl --kubeconfig {box.kubeconfig} get secrets,sa -A")
        print("add a namespace:   curl -s -XPOST -H 'Content-Type: application/json' "
              f"{box.api.url}/api/v1/namespaces -d '{{\"metadata\":{{\"name\":\"demo\"}}}}'")
        print("                   (kubectl writes send protobuf, which the fake server does not speak;")
        print("                    kubectl reads work)   A Secret appears within a second.")
        print("Ctrl-C stops.")
        last = ""
        last_print = 0.0
        while not box.wait(1.0):
            line = box.summary_line()
            steady = box.summary_line(countdown=False)
            if steady != last or time.monotonic() - last_print >= 60:
                print(time.strftime("%H:%M:%S"), line, flush=True)
                last, last_print = steady, time.monotonic()
        return box.exit_code or 0
    except KeyboardInterrupt:
        print("\nstopping", file=sys.stderr)
        return 0
    finally:
        box.stop()
