"""`acr-helper run`: the controller."""

from __future__ import annotations

import argparse
import logging

from acr_helper.runtime import Controller, configure_logging
from acr_helper.settings import KubeSettings, RuntimeSettings, ServerSettings, Settings, TokenSettings

log = logging.getLogger("acr_helper")


def token_settings(args: argparse.Namespace) -> TokenSettings:
    return TokenSettings(
        region=args.region,
        use_vpc_endpoints=args.use_vpc_endpoints,
        cr_endpoint=args.cr_endpoint,
        sts_endpoint=args.sts_endpoint,
        ecs_metadata_endpoint=args.ecs_metadata_endpoint,
        imds_v1_fallback=args.imds_v1_fallback,
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(
        kube=KubeSettings(
            kubeconfig=args.kubeconfig,
            context=args.context,
            config_namespace=args.config_namespace,
            config_name=args.config_name,
            secret_name=args.secret_name,
            qps=args.kube_qps,
            burst=args.kube_burst,
            apply_workers=max(1, args.apply_workers),
        ),
        tokens=token_settings(args),
        runtime=RuntimeSettings(
            resync_period=args.resync_period,
            leader_elect=args.leader_elect,
            lease_name=args.lease_name,
            lease_namespace=args.lease_namespace,
            lease_duration=args.lease_duration,
            renew_deadline=max(1.0, args.lease_duration * 2 / 3),
            retry_period=max(0.2, args.lease_duration / 7.5),
            grace_period=args.grace_period,
            once=args.once,
        ),
        server=ServerSettings(metrics_bind_address=args.metrics_bind_address),
    )


def main(args: argparse.Namespace) -> int:
    configure_logging(args.log_format, args.log_level)
    settings = settings_from_args(args)
    log.info("acr-helper starting (config %s/%s, secret %s, leader election %s)",
             settings.kube.config_namespace, settings.kube.config_name, settings.kube.secret_name,
             "on" if settings.runtime.leader_elect else "off")
    return Controller(settings).run()
