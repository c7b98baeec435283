"""Silence the Alibaba Cloud SDK loggers so nothing they print can carry a credential.

At import, `darabonba-core` and `alibabacloud-tea` attach a `StreamHandler` at DEBUG (and dump
request headers - including `x-acs-security-token` - when `DEBUG=sdk` is set), and the
credentials library attaches several handlers to `credentials` and logs tracebacks on every
failed refresh. We remove their handlers, stop propagation and disable them. urllib3's
connection-pool logger writes full request URLs at DEBUG (the STS `AssumeRoleWithOIDC` call
carries the OIDC token in its query string), so it is capped at INFO.
"""

from __future__ import annotations

import logging

SDK_LOGGERS = (
    "darabonba-core",
    "alibabacloud-tea",
    "credentials",
    "darabonba",
    "Tea",
    "alibabacloud_credentials",
)
URL_LOGGERS = ("urllib3.connectionpool",)


def quiet_sdk_loggers() -> None:
    """Idempotent; call after the SDK modules are imported (their import adds the handlers)."""
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
        logger.setLevel(logging.CRITICAL + 1)
        logger.disabled = True
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.INFO:
            logger.setLevel(logging.INFO)
    try:  # darabonba has a print()-based logger too (unused by the call paths we take)
        from darabonba.utils.logger import Logger
    except ImportError:  # pragma: no cover - optional module
        return
    Logger.current_level = logging.CRITICAL + 1
