"""The `kube-system/acr-configuration` ConfigMap contract: an immutable, validated model.

`parse_config(data)` never raises on user input: it returns a `ConfigResult` holding either a
valid `AcrConfig` or a list of errors (each naming the key, the line inside embedded YAML where
there is one, and what was expected), plus warnings.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from acr_helper.core.durations import format_duration, parse_duration
from acr_helper.core.model import DEFAULT_SECRET_NAME, EXCLUDE_LABEL

CONFIG_NAMESPACE = "kube-system"
CONFIG_NAME = "acr-configuration"
DEFAULT_EXPIRE_DURATION = 3600
MIN_EXPIRE_DURATION = 900
MAX_EXPIRE_DURATION = 43200
DEFAULT_THRESHOLD = timedelta(minutes=15)

#: every key the add-on documents, plus ours
KNOWN_KEYS = (
    "service-account",
    "watch-namespace",
    "expiring-threshold",
    "acr-registry-info",
    "acr-api-version",
    "notify-email",
    "rrsa",
    "webhook-configuration",
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NamespaceSelector(_Frozen):
    """`watch-namespace`: names and shell globs, `all`, and exclusions written `!name`/`!glob`."""

    include: tuple[str, ...] = ("default",)
    exclude: tuple[str, ...] = ()

    @property
    def all(self) -> bool:
        return "all" in self.include or "*" in self.include

    def matches(self, name: str, labels: Mapping[str, str] | None = None) -> bool:
        if labels is not None and labels.get(EXCLUDE_LABEL, "").lower() == "true":
            return False
        if any(fnmatch.fnmatchcase(name, pat) for pat in self.exclude):
            return False
        if self.all:
            return True
        return any(fnmatch.fnmatchcase(name, pat) for pat in self.include)


class ServiceAccountSelector(_Frozen):
    """`service-account`: names (and shell globs); `*` means every ServiceAccount."""

    include: tuple[str, ...] = ("default",)

    @property
    def all(self) -> bool:
        return "*" in self.include

    def matches(self, name: str) -> bool:
        return self.all or any(fnmatch.fnmatchcase(name, pat) for pat in self.include)


class RegistryConfig(_Frozen):
    """One item of `acr-registry-info`."""

    instance_id: str = ""  # "" = Personal Edition; "cri-…" = Enterprise Edition
    region_id: str | None = None  # None = the cluster's region
    domains: tuple[str, ...] | None = None  # None = every domain of the instance / edition default
    assume_role_arn: str | None = None
    expire_duration: int = Field(
        default=DEFAULT_EXPIRE_DURATION, ge=MIN_EXPIRE_DURATION, le=MAX_EXPIRE_DURATION
    )
    custom_access_key: str | None = None
    custom_access_key_secret: SecretStr | None = None
    rrsa_role_arn: str | None = None
    rrsa_oidc_provider_role_arn: str | None = None
    access_key_secret_ref: str | None = None  # a Secret in the config namespace
    #: position in acr-registry-info (0-based); keeps keys unique and messages precise
    index: int = 0

    @property
    def edition(self) -> Literal["enterprise", "personal"]:
        return "enterprise" if self.instance_id else "personal"

    def region(self, default_region: str) -> str:
        return self.region_id or default_region

    def key(self, default_region: str) -> str:
        """A stable, human-readable identifier: the metrics label and the token-cache key.

        `cri-abc` (EE), `personal/cn-hangzhou` (PE); when two entries would share a key (same
        instance with different credentials or domains) the later one gets `#<index>`.
        """
        base = self.instance_id if self.instance_id else f"personal/{self.region(default_region)}"
        if self.instance_id and self.region_id:
            base = f"{self.instance_id}@{self.region_id}"
        return base

    def credential_hint(self, *, rrsa_enabled: bool | None = None) -> str:
        """The configured credential source, without secrets (the tokens layer resolves it).

        The order is the tokens layer's: `customAccessKey`, `accessKeySecretRef`, RRSA (only when
        the `rrsa` key has `enable: true`), then `default-chain` (the Secret
        alibaba-addon-secret, else the worker role). Pass `rrsa_enabled` (`config.rrsa.enable`);
        without it, an entry with `rrsaRoleARN` is shown as `rrsa`.
        """
        rrsa = bool(self.rrsa_role_arn) if rrsa_enabled is None else rrsa_enabled
        if self.custom_access_key:
            base = "access-key"
        elif self.access_key_secret_ref:
            base = f"secret-ref({self.access_key_secret_ref})"
        elif rrsa:
            base = "rrsa"
        else:
            base = "default-chain"
        if self.assume_role_arn:
            base += f" + assume-role({self.assume_role_arn})"
        return base


class RrsaConfig(_Frozen):
    enable: bool = False


class WebhookConfig(_Frozen):
    enable: bool = False
    failure_policy: Literal["Ignore", "Fail"] = "Ignore"
    timeout_seconds: int = Field(default=10, ge=1, le=30)


class AcrConfig(_Frozen):
    service_accounts: ServiceAccountSelector = ServiceAccountSelector()
    watch_namespaces: NamespaceSelector = NamespaceSelector()
    expiring_threshold: timedelta = DEFAULT_THRESHOLD
    #: as configured; empty means "one Personal Edition registry in the cluster's region"
    registries: tuple[RegistryConfig, ...] = ()
    acr_api_version: str = "2018-12-01"
    notify_email: str | None = None
    rrsa: RrsaConfig = RrsaConfig()
    webhook: WebhookConfig = WebhookConfig()
    secret_name: str = DEFAULT_SECRET_NAME

    def effective_registries(self) -> tuple[RegistryConfig, ...]:
        return self.registries or (RegistryConfig(),)

    def registry_keys(self, default_region: str) -> dict[str, RegistryConfig]:
        """Unique key -> entry, in configuration order (see RegistryConfig.key)."""
        out: dict[str, RegistryConfig] = {}
        for reg in self.effective_registries():
            key = reg.key(default_region)
            if key in out:
                key = f"{key}#{reg.index}"
            out[key] = reg
        return out


class ConfigMessage(_Frozen):
    severity: Literal["error", "warning"]
    key: str  # the ConfigMap key, e.g. "acr-registry-info"
    message: str  # what is wrong and what was expected
    line: int | None = None  # 1-based line inside the key's value, when it is embedded YAML
    field: str | None = None  # e.g. "[0].expireDuration"

    def __str__(self) -> str:
        where = self.key
        if self.field:
            where += self.field if self.field.startswith("[") else f".{self.field}"
        if self.line is not None:
            where += f" (line {self.line})"
        return f"{where}: {self.message}"


class ConfigResult(_Frozen):
    config: AcrConfig | None
    errors: tuple[ConfigMessage, ...] = ()
    warnings: tuple[ConfigMessage, ...] = ()

    @property
    def ok(self) -> bool:
        return self.config is not None and not self.errors

    @property
    def messages(self) -> tuple[ConfigMessage, ...]:
        """Errors first, then warnings."""
        return self.errors + self.warnings


# ----------------------------------------------------------------------------------------------
# Parsing. Nothing below raises on user input; every problem becomes a ConfigMessage.

DEFAULT_API_VERSION = "2018-12-01"
#: the longest sensible `expiring-threshold`: the longest token lifetime (expireDuration max)
MAX_THRESHOLD = timedelta(seconds=MAX_EXPIRE_DURATION)
#: below this, a pull that starts just before expiry may carry an expired token
SHORT_THRESHOLD = timedelta(minutes=1)

#: registry item fields as the guide spells them (camelCase) -> RegistryConfig field
REGISTRY_FIELDS: dict[str, str] = {
    "instanceId": "instance_id",
    "regionId": "region_id",
    "domains": "domains",
    "assumeRoleARN": "assume_role_arn",
    "expireDuration": "expire_duration",
    "customAccessKey": "custom_access_key",
    "customAccessKeySecret": "custom_access_key_secret",
    "rrsaRoleARN": "rrsa_role_arn",
    "rrsaOIDCProviderRoleARN": "rrsa_oidc_provider_role_arn",
    "accessKeySecretRef": "access_key_secret_ref",
}
WEBHOOK_FIELDS = ("enable", "failure-policy", "timeout-seconds")
RRSA_FIELDS = ("enable",)
#: names that may be quoted in messages as they are (they are ours, not user values)
_QUOTE_OK = frozenset((*KNOWN_KEYS, *REGISTRY_FIELDS, *WEBHOOK_FIELDS, "access-key-id", "access-key-secret",
                       "accessKeySecretRef", "customAccessKey", "customAccessKeySecret"))
_OUR_NAMES = frozenset(n.lower() for n in (*_QUOTE_OK, "accessKeySecret", "secretRef", "Secret", "kind"))
#: registry fields whose values are names, not secrets (though the field's name mentions one)
_NOT_SECRET_FIELDS = frozenset(("customAccessKey", "accessKeySecretRef"))

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_GLOB_NAME = re.compile(r"[a-z0-9.*?\[\]-]+")
_INSTANCE_ID = re.compile(r"cri-[a-z0-9]+")
_PERSONAL_INSTANCE_ID = re.compile(r"crpi-[a-z0-9]+")
_REGION = re.compile(r"[a-z]{2,}(-[a-z0-9]+)+")
_ROLE_ARN = re.compile(r"acs:ram::(\d+|\.\*):role/([A-Za-z0-9._@-]{1,64})", re.IGNORECASE)
_OIDC_ARN = re.compile(r"acs:ram::(\d+|\.\*):(role|oidc-provider)/([A-Za-z0-9._@-]{1,128})", re.IGNORECASE)
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_ODD_SPACE = re.compile("[\u00a0\u2000-\u200b\u202f\u205f\u3000]")  # \u200b: zero width
_ZERO_WIDTH = re.compile("\u200b")
_SECRET_WORD = re.compile(r"secret", re.IGNORECASE)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<dash>- +)?(?P<key>[A-Za-z_][\w.-]*) *:(?: |$)")
_ITEM_LINE = re.compile(r"^(?P<indent> *)-(?P<gap> +)\S")
_QUOTED_LIST = re.compile(r"""(?:"[^"\n]*"|'[^'\n]*')(?:\s*,\s*(?:"[^"\n]*"|'[^'\n]*'|[^,"'\s#]+))+""")

_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"


class _Report:
    """Collects messages for one parse.

    Every message, key and field goes through `_mask_quoted` (quoted values that mention a
    credential are cut at that word) and then through the redaction of `protect`ed fragments: the
    text that follows a secret, password, token or AccessKey word anywhere in the input. So even a
    message that echoes a value without quoting it cannot carry a pasted credential.
    """

    def __init__(self) -> None:
        self.errors: list[ConfigMessage] = []
        self.warnings: list[ConfigMessage] = []
        self._fragments: set[str] = set()
        self._redact: re.Pattern[str] | None = None

    def protect(self, text: str) -> None:
        """Remember the fragments of `text` that may be credentials; no message will show them."""
        found = _credential_fragments(text) - self._fragments
        if found:
            self._fragments |= found
            alternatives = sorted(self._fragments, key=len, reverse=True)
            self._redact = re.compile("|".join(re.escape(f) for f in alternatives), re.IGNORECASE)

    def clean(self, text: str) -> str:
        text = _mask_quoted(text)
        return self._redact.sub("***", text) if self._redact is not None else text

    def _message(
        self, severity: Literal["error", "warning"], key: str, message: str, line: int | None, field: str | None
    ) -> ConfigMessage:
        return ConfigMessage(
            severity=severity,
            key=self.clean(key),
            message=self.clean(message),
            line=line,
            field=self.clean(field) if field is not None else None,
        )

    def error(self, key: str, message: str, *, line: int | None = None, field: str | None = None) -> None:
        self.errors.append(self._message("error", key, message, line, field))

    def warn(self, key: str, message: str, *, line: int | None = None, field: str | None = None) -> None:
        self.warnings.append(self._message("warning", key, message, line, field))

    def messages(self) -> list[ConfigMessage]:
        return self.errors + self.warnings


_BACKTICKED = re.compile(r"`([^`]*)`")
#: a fragment a message quotes: `backticked`, 'single' or "double" quoted (an apostrophe inside a
#: word, as in "guide's", opens nothing)
_MESSAGE_FRAGMENT = re.compile(r"`([^`]*)`|(?<!\w)'([^'\n]*)'(?!\w)|(?<!\w)\"([^\"\n]*)\"(?!\w)")
_FRAGMENT_SPLIT = re.compile(r"[\s:=,;'\"`()\[\]{}<>|]+")
_COMMENT_START = re.compile(r"\s(#|//)")
#: how many words after a credential word are protected (a pasted `key: value` has one)
_PROTECTED_WORDS = 3


def _credential_fragments(text: str) -> set[str]:
    """Words of `text` that may be credentials: on every line that mentions a secret, password,
    token or AccessKey, the word holding that mention (unless it is one of our names) and the
    next few words up to a comment. A `customAccessKey:` or `accessKeySecretRef:` line (an ID and
    a Secret's name, not secrets) contributes only when its value mentions a credential itself."""
    out: set[str] = set()
    for line in str(text).split("\n"):
        m = _SENSITIVE_WORD.search(line)
        if m is None:
            continue
        km = _KEY_LINE.match(line)
        if km and km.group("key") in _NOT_SECRET_FIELDS:
            m = _SENSITIVE_WORD.search(line, km.end())
            if m is None:
                continue
        start = m.start()
        while start > 0 and not _FRAGMENT_SPLIT.match(line[start - 1]):
            start -= 1
        tail = line[start:]
        comment = _COMMENT_START.search(tail)
        if comment is not None:
            tail = tail[: comment.start()]
        words = [w for w in _FRAGMENT_SPLIT.split(tail) if w]
        if words and _is_our_name(words[0]):
            words = words[1:]
        for word in words[:_PROTECTED_WORDS]:
            if len(word) >= 4 and not _is_our_name(word):
                out.add(word)
    return out


def _is_our_name(word: str) -> bool:
    low = word.lower()
    return low in _OUR_NAMES or _SENSITIVE_WORD.fullmatch(low) is not None


def _mask_quoted(message: str) -> str:
    """Every quoted user value in a message (`backticked`, 'single' or "double" quoted) goes
    through _safe_shown (names of keys and fields stay readable), so a secret pasted under the
    wrong key is never echoed."""

    def one(m: re.Match[str]) -> str:
        index = next(i for i in (1, 2, 3) if m.group(i) is not None)
        text = m.group(index)
        quote = m.group(0)[0]
        bare, _, rest = text.partition(":")
        if text in _QUOTE_OK or (bare.strip() in _QUOTE_OK and (not rest or rest.strip().startswith("..."))):
            return m.group(0)
        if _SENSITIVE_WORD.search(text) is None:
            return m.group(0)
        return f"{quote}{_safe_shown(text, limit=10_000)}{quote}"

    return _MESSAGE_FRAGMENT.sub(one, message)


def _unknown_field(
    report: _Report, key: str, name: str, known: tuple[str, ...] | list[str], *, line: int | None, field: str
) -> None:
    near = _nearest(name, known)
    report.warn(
        key,
        f"unknown field `{name}` ignored"
        + (f"; did you mean `{near}`?" if near else f"; known fields: {', '.join(known)}"),
        line=line,
        field=field,
    )


def _nearest(name: str, candidates: tuple[str, ...] | list[str]) -> str | None:
    lowered = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def _canon(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "")


def _resolve_key(name: str, known: tuple[str, ...] | list[str]) -> tuple[str | None, bool]:
    """(canonical key, exact?) for `name`, matching case- and `-`/`_`-insensitively; None if unknown."""
    if name in known:
        return name, True
    for k in known:
        if _canon(k) == _canon(name):
            return k, False
    return None, False


def _key_label(name: str) -> str:
    """A ConfigMap key as a message's `key`: as is when plain, else quoted so it is visible."""
    if name and name.isprintable() and name.strip() == name:
        return _safe_shown(name)
    return _safe_shown(repr(name))


_SENSITIVE_WORD = re.compile(r"secret|password|passwd|token|accesskey|access-key|access_key", re.IGNORECASE)


def _safe_shown(value: str, limit: int = 60) -> str:
    """A value for a message: shortened, and never something that looks like a secret key's.

    A value that mentions a secret, password, token or AccessKey (say an AccessKey line pasted
    under the wrong key) is shown only up to that word; the rest is masked.
    """
    value = value.replace("\n", " ").replace("`", "'")
    m = _SENSITIVE_WORD.search(value)
    if m:
        value = value[: m.end()] + "…(masked)"
    return value if len(value) <= limit else value[: limit - 1] + "…"


# ---- text normalisation and the lenient pre-pass ---------------------------------------------


def _normalise_text(key: str, text: str, report: _Report) -> str:
    """BOM, CRLF/CR line ends and tab indentation (read as two spaces per tab, with a warning)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    odd = _ODD_SPACE.search(text)
    if odd:
        first = text[: odd.start()].count("\n") + 1
        report.warn(
            key,
            "non-breaking or other Unicode spaces (as copied from a web page) read as plain spaces; "
            "type plain spaces instead",
            line=first,
        )
        text = _ODD_SPACE.sub(" ", _ZERO_WIDTH.sub("", text))
    lines = text.split("\n")
    tabbed: list[int] = []
    for i, line in enumerate(lines):
        stripped = line.lstrip(" \t")
        lead = line[: len(line) - len(stripped)]
        if "\t" in lead and stripped:
            tabbed.append(i + 1)
        if "\t" in line:
            # indentation: two spaces per tab; elsewhere (a separator after `:`), one space
            lines[i] = lead.replace("\t", "  ") + (_detab(stripped) if "\t" in stripped else stripped)
    if tabbed:
        shown = ", ".join(str(n) for n in tabbed[:5]) + (" …" if len(tabbed) > 5 else "")
        report.warn(
            key,
            f"tab characters used for indentation on line(s) {shown}; YAML allows only spaces. "
            "Read each tab as two spaces; indent with spaces instead",
            line=tabbed[0],
        )
    return "\n".join(lines)


def _detab(text: str) -> str:
    """Tabs outside quotes become spaces (PyYAML rejects a tab after `:`, YAML allows it)."""
    out: list[str] = []
    quote: str | None = None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "\t":
            ch = " "
        out.append(ch)
    return "".join(out)


def _split_comment(line: str) -> tuple[str, str | None]:
    """Split a trailing `// comment` (outside quotes, after whitespace) from a line."""
    quote: str | None = None
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'" and (i == 0 or line[i - 1] in " \t:-[{,"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line, None  # already a YAML comment: nothing after it matters
        elif line.startswith("//", i) and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip(), line[i:]
        i += 1
    return line, None


def _lenient_pass(key: str, text: str, report: _Report) -> str:
    """Fix what is invalid (or misleading) YAML but unambiguous as pasted from the guide.

    Keeps the number of lines so every line number stays true to the user's text.
    """
    out: list[str] = []
    item = -1  # index of the registry item the line belongs to (for `field`)
    item_indent: int | None = None
    for n, line in enumerate(text.split("\n"), start=1):
        im = _ITEM_LINE.match(line)
        if im and (item_indent is None or len(im.group("indent")) <= item_indent):
            item_indent = len(im.group("indent"))
            item += 1
        body, comment = _split_comment(line)
        if comment is not None:
            k = _KEY_LINE.match(body)
            hint = f"`{k.group('key')}: ...  # comment`" if k else "`# comment`"
            report.warn(
                key,
                "a trailing `// ...` comment is not YAML; it was ignored. Write YAML comments with "
                f"`#`, e.g. {hint}",
                line=n,
                field=f"[{item}]" if item >= 0 else None,
            )
            line = body
        m = _KEY_LINE.match(line)
        if m and m.group("key").lower() == "domains":
            rest = line[m.end() :].strip()
            if _QUOTED_LIST.fullmatch(rest):
                parts = [p.strip().strip("\"'").strip() for p in _split_quoted(rest)]
                joined = ",".join(p for p in parts if p)
                fixed = f'{m.group("indent")}{m.group("dash") or ""}{m.group("key")}: "{joined}"'
                report.warn(
                    key,
                    f'`domains: {_safe_shown(rest)}` is not valid YAML; read as `domains: "{joined}"`. '
                    f"Write it that way, or as a YAML list: `domains: [{', '.join(p for p in parts if p)}]`",
                    line=n,
                    field=f"[{max(item, 0)}].domains",
                )
                line = fixed
        out.append(line)
    return "\n".join(out)


def _split_quoted(text: str) -> list[str]:
    parts: list[str] = []
    buf = ""
    quote: str | None = None
    for ch in text:
        if quote:
            buf += ch
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            buf += ch
        elif ch == ",":
            parts.append(buf)
            buf = ""
        else:
            buf += ch
    parts.append(buf)
    return parts


# ---- YAML with line numbers ------------------------------------------------------------------


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _bad_character(key: str, text: str, report: _Report) -> bool:
    """Report a character YAML does not allow (control characters); True if there is one."""
    m = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if m is None:
        return False
    report.error(
        key,
        f"not valid YAML: it contains the control character U+{ord(m.group()):04X}, which YAML forbids",
        line=text[: m.start()].count("\n") + 1,
    )
    return True


def _compose(key: str, text: str, report: _Report) -> yaml.Node | Literal[False] | None:
    """The single YAML node of `text`; None for an empty document; False after an error."""
    if _bad_character(key, text, report):
        return False
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)
        return loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        report.error(key, _yaml_error_message(text, exc), line=_error_line(exc))
    except yaml.YAMLError:
        report.error(key, "not valid YAML")
    except RecursionError:
        report.error(key, "not valid YAML: nested too deeply")
    finally:
        if loader is not None:
            loader.dispose()
    return False


def _error_line(exc: yaml.MarkedYAMLError) -> int | None:
    mark = exc.problem_mark or exc.context_mark
    if exc.context_mark is not None and "quoted scalar" in str(exc.context or ""):
        mark = exc.context_mark  # an unclosed quote: point at where it opens, not at the end
    return int(mark.line) + 1 if mark is not None else None


def _yaml_error_message(text: str, exc: yaml.MarkedYAMLError) -> str:
    """Explain a YAML error without echoing the source; values near a secret key are masked."""
    lines = text.split("\n")
    pline = exc.problem_mark.line if exc.problem_mark is not None else None
    cline = exc.context_mark.line if exc.context_mark is not None else None
    near = [ln for ln in (pline, cline) if ln is not None and 0 <= ln < len(lines)]
    near_secret = any(_SECRET_WORD.search(lines[ln]) for ln in near) or any(
        _SECRET_WORD.search(lines[ln - 1]) for ln in near if ln >= 1
    )
    problem = str(exc.problem or "invalid YAML")
    context = str(exc.context) if exc.context else ""
    if near_secret:
        problem = _QUOTED.sub("'***'", problem)
        context = _QUOTED.sub("'***'", context)
    msg = f"not valid YAML: {problem}"
    if context and cline is not None and cline != pline:
        msg += f" ({context} that starts on line {cline + 1})"
    hint = _yaml_hint(lines, pline, cline, problem, near_secret)
    if hint:
        msg += f". {hint}"
    return msg


def _yaml_hint(lines: list[str], pline: int | None, cline: int | None, problem: str, masked: bool) -> str:
    if pline is None or not 0 <= pline < len(lines):
        if "end of stream" in problem:
            return "A quote or bracket is not closed"
        return ""
    cur = lines[pline]
    km = _KEY_LINE.match(cur)
    # a key line inside a list item whose indentation does not match the item's first key
    if km and not km.group("dash"):
        for back in range(pline - 1, -1, -1):
            prev = lines[back]
            if not prev.strip() or prev.lstrip().startswith("#"):
                continue
            im = _ITEM_LINE.match(prev)
            pm = _KEY_LINE.match(prev)
            if im and pm:
                col = len(im.group("indent")) + 1 + len(im.group("gap"))
                indent = len(km.group("indent"))
                if indent != col:
                    return (
                        f"`{km.group('key')}` on line {pline + 1} is indented {indent} spaces, but the keys "
                        f"of the list item that starts on line {back + 1} (`{pm.group('key')}`) begin after "
                        f"{col} spaces; indent `{km.group('key')}` by exactly {col} spaces so that it "
                        "lines up "
                        f"with `{pm.group('key')}`"
                    )
                break
            if pm and len(pm.group("indent")) != len(km.group("indent")) and not im:
                if len(km.group("indent")) > len(pm.group("indent")):
                    return (
                        f"`{km.group('key')}` on line {pline + 1} is indented deeper than "
                        f"`{pm.group('key')}` "
                        f"on line {back + 1}; keys of one mapping must line up"
                    )
                continue
            if pm:
                continue
            break
    if "mapping values are not allowed" in problem:
        return "A value that contains `: ` must be quoted, and keys of one item must line up"
    if "end of stream" in problem or "while scanning a quoted scalar" in problem:
        return "A quote is not closed"
    if "expected <block end>" in problem:
        return "Keys of one list item must line up, and every item starts with `- `"
    if "could not find expected ':'" in problem:
        return "A key is missing its `:`, or a quoted value continues past its closing quote"
    if "undefined alias" in problem:
        return "A value starting with `*` must be quoted"
    if "cannot start any token" in problem:
        return "Values starting with `@`, `` ` `` or `%` must be quoted"
    return ""


def _construct(node: yaml.Node) -> Any:
    """The Python value of a scalar node (SafeLoader rules); raises ValueError on bad input."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=False)
    except Exception as exc:
        raise ValueError(type(exc).__name__) from None
    finally:
        loader.dispose()


def _scalar(node: yaml.Node) -> tuple[Any, bool]:
    """(value, ok) for a scalar node; ok=False for a mapping/sequence or an unconstructable scalar."""
    if not isinstance(node, yaml.ScalarNode):
        return None, False
    if node.tag == _STR_TAG:
        return str(node.value), True
    try:
        return _construct(node), True
    except ValueError:
        return str(node.value), True


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "a scalar"


def _mapping_items(
    key: str, node: yaml.MappingNode, report: _Report, *, field: str = ""
) -> list[tuple[str, yaml.Node, int]]:
    """(key text, value node, line) of a mapping, warning about duplicates and odd keys."""
    out: list[tuple[str, yaml.Node, int]] = []
    seen: dict[str, int] = {}
    for knode, vnode in node.value:
        line = _line(knode)
        if not isinstance(knode, yaml.ScalarNode):
            report.error(
                key, f"a key must be a plain name, not {_kind(knode)}", line=line, field=field or None
            )
            continue
        name = str(knode.value)
        if name == "<<":
            report.warn(
                key, "YAML merge keys (`<<`) are not supported here; ignored", line=line, field=field or None
            )
            continue
        if name in seen:
            report.warn(
                key,
                f"`{name}` appears twice (lines {seen[name]} and {line}); the last one wins",
                line=line,
                field=f"{field}.{name}" if field else name,
            )
            out = [item for item in out if item[0] != name]
        seen[name] = line
        out.append((name, vnode, line))
    return out


# ---- scalar keys ---------------------------------------------------------------------------


def _unquote(key: str, value: str, report: _Report) -> str:
    v = value.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        report.warn(key, f"the value is wrapped in literal quotes ({_safe_shown(v)}); read without them")
        v = v[1:-1].strip()
    return v


def _split_list(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


def _name_ok(name: str, pattern: re.Pattern[str], limit: int) -> bool:
    if any(c in name for c in "*?["):
        return bool(_GLOB_NAME.fullmatch(name)) and len(name) <= limit
    return bool(pattern.fullmatch(name)) and len(name) <= limit


def _parse_service_accounts(key: str, raw: str, report: _Report) -> ServiceAccountSelector:
    value = _unquote(key, raw, report)
    items = _split_list(value)
    if not items:
        report.error(
            key,
            "empty: an empty value selects no ServiceAccount, so it is not read as the default. "
            f"For the default write `{key}: default` (or remove the key); for every ServiceAccount "
            f'`{key}: "*"`',
        )
        return ServiceAccountSelector()
    out: list[str] = []
    for item in items:
        name = item
        if name != name.lower():
            report.warn(
                key,
                f"`{_safe_shown(name)}`: ServiceAccount names are lower case; read as `{_safe_shown(name.lower())}`",
            )
            name = name.lower()
        if name.startswith("!"):
            report.error(
                key,
                f"`{name}`: exclusions (`!name`) are supported only in watch-namespace; "
                "list the ServiceAccounts to manage, or `*` for all",
            )
            continue
        if name != "*" and not _name_ok(name, _DNS_SUBDOMAIN, 253):
            report.error(
                key,
                f"`{_safe_shown(name)}` is not a ServiceAccount name or glob; expected lower-case "
                "names such as `default,builder`, globs such as `ci-*`, or `*` for all",
            )
            continue
        if name not in out:
            out.append(name)
    return ServiceAccountSelector(include=tuple(out) or ("default",))


def _parse_namespaces(key: str, raw: str, report: _Report) -> NamespaceSelector:
    value = _unquote(key, raw, report)
    items = _split_list(value)
    if not items:
        report.error(
            key,
            "empty: an empty value selects no namespace, so it is not read as the default. "
            f"For the default write `{key}: default` (or remove the key); for every namespace "
            f"`{key}: all`",
        )
        return NamespaceSelector()
    include: list[str] = []
    exclude: list[str] = []
    for item in items:
        name = item
        if name != name.lower():
            report.warn(
                key, f"`{_safe_shown(name)}`: namespace names are lower case; read as `{_safe_shown(name.lower())}`"
            )
            name = name.lower()
        negated = name.startswith("!")
        if negated:
            name = name[1:].strip()
        if name in ("all", "*"):
            if negated:
                report.error(key, f"`!{name}` would exclude every namespace; list the namespaces to watch")
                continue
            include.append(name)
            continue
        if not _name_ok(name, _DNS_LABEL, 63):
            report.error(
                key,
                f"`{_safe_shown(item)}` is not a namespace name or glob; expected names such as "
                "`default,team-a`, globs such as `team-*`, `all`, and exclusions such as "
                "`!kube-system`",
            )
            continue
        target = exclude if negated else include
        if name not in target:
            target.append(name)
    if exclude and not include:
        report.warn(key, f"only exclusions given; read as `all,{','.join('!' + e for e in exclude)}`")
        include = ["all"]
    if not include and not exclude:
        return NamespaceSelector()
    return NamespaceSelector(include=tuple(dict.fromkeys(include)), exclude=tuple(exclude))


def _parse_threshold(key: str, raw: str, report: _Report) -> timedelta | None:
    value = _unquote(key, raw, report)
    if not value:
        report.warn(key, f"empty; using the default {format_duration(DEFAULT_THRESHOLD)}")
        return DEFAULT_THRESHOLD
    try:
        delta = parse_duration(value)
    except ValueError as exc:
        report.error(key, str(exc))
        return None
    if delta <= timedelta(0):
        report.error(key, f"must be positive, got {format_duration(delta)}; expected e.g. 15m (the default)")
        return None
    if delta > MAX_THRESHOLD:
        report.error(
            key,
            f"{format_duration(delta)} is longer than any token lives "
            f"(at most {format_duration(MAX_THRESHOLD)}, "
            "the largest expireDuration); expected a few minutes, e.g. 15m (the default)",
        )
        return None
    if delta < SHORT_THRESHOLD:
        report.warn(
            key,
            f"{format_duration(delta)} is very short: a pull that starts just before a token "
            "expires may fail; 15m is recommended",
        )
    return delta


# ---- embedded YAML keys ----------------------------------------------------------------------


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _parse_flag_mapping(
    key: str, raw: str, known: tuple[str, ...], report: _Report
) -> dict[str, tuple[Any, int]] | None:
    """Parse a small YAML mapping (`rrsa`, `webhook-configuration`) into known key -> (value, line)."""
    text = _lenient_pass(key, _normalise_text(key, raw, report), report)
    node = _compose(key, text, report)
    if node is False:
        return None
    if node is None:
        return {}
    if isinstance(node, yaml.ScalarNode) and _as_bool(_scalar(node)[0]) is not None and "enable" in known:
        report.warn(
            key,
            f"expected a YAML mapping such as `enable: true`; read `{node.value}` as "
            f"`enable: {str(_as_bool(_scalar(node)[0])).lower()}`",
            line=_line(node),
        )
        return {"enable": (_as_bool(_scalar(node)[0]), _line(node))}
    if not isinstance(node, yaml.MappingNode):
        report.error(
            key,
            f"expected a YAML mapping with {', '.join(f'`{k}`' for k in known)}, got {_kind(node)}",
            line=_line(node),
        )
        return None
    out: dict[str, tuple[Any, int]] = {}
    for name, vnode, line in _mapping_items(key, node, report):
        canon, exact = _resolve_key(name, known)
        if canon is None:
            _unknown_field(report, key, name, known, line=line, field=name)
            continue
        if not exact:
            report.warn(key, f"`{name}` read as `{canon}`; write it as `{canon}`", line=line, field=canon)
        value, ok = _scalar(vnode)
        if not ok:
            report.error(
                key, f"`{canon}` must be a single value, not {_kind(vnode)}", line=_line(vnode), field=canon
            )
            continue
        out[canon] = (value, _line(vnode))
    return out


def _parse_rrsa(key: str, raw: str, report: _Report) -> RrsaConfig | None:
    fields = _parse_flag_mapping(key, raw, RRSA_FIELDS, report)
    if fields is None:
        return None
    if "enable" not in fields:
        return RrsaConfig()
    value, line = fields["enable"]
    flag = _as_bool(value)
    if flag is None:
        report.error(key, "`enable` must be true or false", line=line, field="enable")
        return None
    return RrsaConfig(enable=flag)


def _parse_webhook(key: str, raw: str, report: _Report) -> WebhookConfig | None:
    fields = _parse_flag_mapping(key, raw, WEBHOOK_FIELDS, report)
    if fields is None:
        return None
    ok = True
    enable = False
    policy: Literal["Ignore", "Fail"] = "Ignore"
    timeout = 10
    if "enable" in fields:
        value, line = fields["enable"]
        flag = _as_bool(value)
        if flag is None:
            report.error(key, "`enable` must be true or false", line=line, field="enable")
            ok = False
        else:
            enable = flag
    if "failure-policy" in fields:
        value, line = fields["failure-policy"]
        text = str(value).strip() if value is not None else ""
        if text == "Ignore" or text == "Fail":
            policy = "Ignore" if text == "Ignore" else "Fail"
        elif text.lower() in ("ignore", "fail"):
            policy = "Ignore" if text.lower() == "ignore" else "Fail"
            report.warn(key, f"`{text}` read as `{policy}`", line=line, field="failure-policy")
        else:
            report.error(
                key,
                f"`failure-policy` must be Ignore or Fail, got `{_safe_shown(text)}`",
                line=line,
                field="failure-policy",
            )
            ok = False
    if "timeout-seconds" in fields:
        value, line = fields["timeout-seconds"]
        seconds = _as_int(value)
        if seconds is None or not 1 <= seconds <= 30:
            report.error(
                key,
                "`timeout-seconds` must be a whole number of seconds from 1 to 30 (default 10)",
                line=line,
                field="timeout-seconds",
            )
            ok = False
        else:
            timeout = seconds
    return WebhookConfig(enable=enable, failure_policy=policy, timeout_seconds=timeout) if ok else None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*\d{1,9}\s*", value):
        return int(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e9:
        return int(value)
    return None


# ---- acr-registry-info -----------------------------------------------------------------------


def _parse_registries(key: str, raw: str, report: _Report) -> tuple[RegistryConfig, ...] | None:
    text = _lenient_pass(key, _normalise_text(key, raw, report), report)
    if not text.strip():
        return ()
    node = _compose(key, text, report)
    if node is False:
        return None
    if node is None:
        return ()
    if isinstance(node, yaml.MappingNode):
        report.warn(
            key,
            "expected a YAML list of registries (each item starts with `- `); read this single "
            "mapping as a list of one",
            line=_line(node),
        )
        items: list[yaml.Node] = [node]
    elif isinstance(node, yaml.SequenceNode):
        items = list(node.value)
    elif isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
        return ()
    else:
        report.error(
            key,
            "expected a YAML list of registries, e.g.\n- instanceId: cri-xxx\n  regionId: cn-hangzhou",
            line=_line(node),
        )
        return None
    n_errors = len(report.errors)
    out: list[RegistryConfig] = []
    for index, item in enumerate(items):
        reg = _parse_registry(key, index, item, report)
        if reg is not None:
            out.append(reg)
    if len(report.errors) > n_errors:
        return None
    _check_registry_set(key, out, items, report)
    if len(report.errors) > n_errors:
        return None
    return tuple(out)


_CLUSTER_REGION = "the cluster's region"
_PE_PREFIXES = ("registry", "registry-vpc", "registry-intl", "registry-intl-vpc")
_PE_DOMAIN = re.compile(r"^(?:registry|registry-vpc|registry-intl|registry-intl-vpc)\.([a-z0-9-]+)\.aliyuncs\.com$")


def personal_default_domains(region: str) -> tuple[str, ...]:
    """The domains a Personal Edition entry without `domains` covers in `region`."""
    return tuple(f"{p}.{region}.aliyuncs.com" for p in _PE_PREFIXES)


def _region_label(reg: RegistryConfig) -> str:
    return reg.region_id or _CLUSTER_REGION


def _default_claim(reg: RegistryConfig) -> tuple[str, str, str]:
    """What an entry without `domains` claims: the same tuple = the same default domains."""
    region = reg.region_id.lower() if reg.region_id else _CLUSTER_REGION
    return ("personal", "", region) if not reg.instance_id else ("enterprise", reg.instance_id, region)


def _check_registry_set(
    key: str, regs: list[RegistryConfig], items: list[yaml.Node], report: _Report
) -> None:
    def both(a: RegistryConfig, b: RegistryConfig) -> str:
        return f"items [{a.index}] (line {_line(items[a.index])}) and [{b.index}] (line {_line(items[b.index])})"

    fix = "a domain can get its credentials from one registry only: merge the items, or give each its own `domains`"
    # 1. explicit domains claimed twice
    claimed: dict[str, int] = {}
    for reg in regs:
        for domain in reg.domains or ():
            d = domain.lower()
            if d in claimed and claimed[d] != reg.index:
                prior = claimed[d]
                report.error(
                    key,
                    f"items [{prior}] (line {_line(items[prior])}) and [{reg.index}] "
                    f"(line {_line(items[reg.index])}) both claim the domain `{domain}`; a domain can get "
                    "its credentials from one registry only",
                    line=_line(items[reg.index]),
                    field=f"[{reg.index}].domains",
                )
            else:
                claimed.setdefault(d, reg.index)
    implicit = [r for r in regs if r.domains is None]
    explicit = [r for r in regs if r.domains is not None]
    # 2. two entries without `domains` whose default domains are the same set
    for j, reg in enumerate(implicit):
        for other in implicit[:j]:
            mine, theirs = _default_claim(reg), _default_claim(other)
            what = (
                f"Enterprise Edition instance `{reg.instance_id}`" if reg.instance_id else "Personal Edition registry"
            )
            if mine == theirs:
                region = _region_label(reg)
                listed = ", ".join(f"`{d}`" for d in personal_default_domains(reg.region_id or "<region>"))
                domains = f" ({listed})" if not reg.instance_id else " (every domain of the instance)"
                report.error(
                    key,
                    f"{both(other, reg)} both use the default domains of the {what} in {region}{domains}; {fix}",
                    line=_line(items[reg.index]),
                    field=f"[{reg.index}]",
                )
            elif mine[:2] == theirs[:2] and _CLUSTER_REGION in (mine[2], theirs[2]):
                named = reg.region_id or other.region_id
                report.warn(
                    key,
                    f"{both(other, reg)} name the {what} without `domains`, one in {named}, one in the "
                    f"cluster's region: when the cluster runs in {named} both claim the same domains "
                    "(set `regionId` on both, or `domains`)",
                    line=_line(items[reg.index]),
                    field=f"[{reg.index}]",
                )
    # 3. an explicit domain that is a default domain of a Personal Edition entry without `domains`
    #    (or, for an Enterprise Edition instance, another entry of that instance without `domains`)
    for reg in explicit:
        for other in implicit:
            first, second = (reg, other) if reg.index < other.index else (other, reg)
            line, field = _line(items[second.index]), f"[{second.index}]"
            if other.instance_id:
                if other.instance_id == reg.instance_id and other.region_id == reg.region_id:
                    report.warn(
                        key,
                        f"{both(first, second)} name the instance `{reg.instance_id}`; item [{other.index}] "
                        "has no `domains`, so it covers every domain of the instance, most likely also "
                        f"those item [{reg.index}] lists; give item [{other.index}] its own `domains`",
                        line=line,
                        field=field,
                    )
                continue
            for domain in reg.domains or ():
                d = domain.lower()
                if other.region_id:
                    if d in personal_default_domains(other.region_id.lower()):
                        report.error(
                            key,
                            f"{both(first, second)} both claim the domain `{domain}`: item [{reg.index}] lists "
                            f"it and it is a default domain of item [{other.index}], the Personal Edition "
                            f"registry in {other.region_id} (no `domains`); {fix}",
                            line=line,
                            field=field,
                        )
                        break
                elif (m := _PE_DOMAIN.match(d)) is not None:
                    report.warn(
                        key,
                        f"{both(first, second)}: item [{reg.index}] lists `{domain}`, a default domain of the "
                        f"Personal Edition registry in {m.group(1)}, and item [{other.index}] is the Personal "
                        f"Edition registry in the cluster's region (no `domains`): when the cluster runs in "
                        f"{m.group(1)} both claim that domain",
                        line=line,
                        field=field,
                    )
                    break


def _parse_registry(key: str, index: int, node: yaml.Node, report: _Report) -> RegistryConfig | None:
    where = f"[{index}]"
    line = _line(node)
    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
        report.error(
            key,
            "empty list item; expected fields such as `instanceId`, `regionId`, `domains`",
            line=line,
            field=where,
        )
        return None
    if not isinstance(node, yaml.MappingNode):
        report.error(
            key,
            f"each registry must be a mapping with fields such as `instanceId`, `regionId`, "
            f"`domains`; got {_kind(node)}"
            + (" (is a space missing after `:`?)" if isinstance(node, yaml.ScalarNode) else ""),
            line=line,
            field=where,
        )
        return None
    known = tuple(REGISTRY_FIELDS)
    values: dict[str, Any] = {"index": index}
    lines: dict[str, int] = {}
    errors_before = len(report.errors)
    for name, vnode, kline in _mapping_items(key, node, report, field=where):
        canon, exact = _resolve_key(name, known)
        if canon is None:
            _unknown_field(report, key, name, known, line=kline, field=f"{where}.{name}")
            continue
        if not exact:
            report.warn(
                key,
                f"`{name}` read as `{canon}`; field names are case-sensitive camelCase, write `{canon}`",
                line=kline,
                field=f"{where}.{canon}",
            )
        lines[canon] = _line(vnode)
        parsed = _FIELD_PARSERS[canon](key, f"{where}.{canon}", vnode, report)
        if parsed is not _INVALID:
            values[REGISTRY_FIELDS[canon]] = parsed
    ak, sk, ref = (
        values.get("custom_access_key"),
        values.get("custom_access_key_secret"),
        values.get("access_key_secret_ref"),
    )
    if ak and not sk:
        report.error(
            key,
            "customAccessKey is set but customAccessKeySecret is missing; set both or neither",
            line=lines.get("customAccessKey", line),
            field=f"{where}.customAccessKeySecret",
        )
    if sk and not ak:
        report.error(
            key,
            "customAccessKeySecret is set but customAccessKey is missing; set both or neither",
            line=lines.get("customAccessKeySecret", line),
            field=f"{where}.customAccessKey",
        )
    if (ak or sk) and ref:
        report.error(
            key,
            "set either customAccessKey/customAccessKeySecret or accessKeySecretRef, not both "
            "(accessKeySecretRef keeps the keys out of the ConfigMap)",
            line=lines.get("accessKeySecretRef", line),
            field=f"{where}.accessKeySecretRef",
        )
    if values.get("rrsa_role_arn") and (ak or ref):
        report.warn(
            key,
            "rrsaRoleARN is ignored because an AccessKey is configured for this registry",
            line=lines.get("rrsaRoleARN", line),
            field=f"{where}.rrsaRoleARN",
        )
    if values.get("rrsa_oidc_provider_role_arn") and not values.get("rrsa_role_arn"):
        report.warn(
            key,
            "rrsaOIDCProviderRoleARN has no effect without rrsaRoleARN",
            line=lines.get("rrsaOIDCProviderRoleARN", line),
            field=f"{where}.rrsaOIDCProviderRoleARN",
        )
    if len(report.errors) > errors_before:
        return None
    try:
        return RegistryConfig(**values)
    except Exception:
        report.error(key, "invalid registry entry", line=line, field=where)
        return None


class _Invalid:
    pass


_INVALID: Any = _Invalid()


def _str_field(
    key: str, field: str, node: yaml.Node, report: _Report, *, secret: bool = False
) -> str | Any | None:
    """A string field: None for null/empty; _INVALID (with an error) for lists, maps, numbers, bools."""
    name = field.rsplit(".", 1)[-1]
    if not isinstance(node, yaml.ScalarNode):
        report.error(key, f"`{name}` must be a string, not {_kind(node)}", line=_line(node), field=field)
        return _INVALID
    if node.tag == _NULL_TAG:
        return None
    if node.tag != _STR_TAG:
        if secret:
            report.error(key, f"`{name}` must be a quoted string", line=_line(node), field=field)
            return _INVALID
        if node.tag in (_BOOL_TAG, _INT_TAG) or node.tag.endswith(":float"):
            report.error(
                key,
                f"`{name}` must be a string; got `{_safe_shown(str(node.value))}` which YAML reads as "
                f"a {node.tag.rsplit(':', 1)[-1]}: quote it",
                line=_line(node),
                field=field,
            )
            return _INVALID
    value = str(node.value).strip()
    return value or None


def _f_instance(key: str, field: str, node: yaml.Node, report: _Report) -> Any:
    value = _str_field(key, field, node, report)
    if value is _INVALID:
        return _INVALID
    if value is None:
        return ""
    if value != value.lower() and _INSTANCE_ID.fullmatch(value.lower()):
        report.warn(
            key,
            f"instance IDs are lower case; read `{value}` as `{value.lower()}`",
            line=_line(node),
            field=field,
        )
        value = value.lower()
    if _PERSONAL_INSTANCE_ID.fullmatch(value):
        report.warn(
            key,
            f"`{value}` is a new-style Personal Edition instance (crpi-…); the ACK add-on does not "
            "support these and ACR may refuse to issue tokens for it",
            line=_line(node),
            field=field,
        )
        return value
    if not _INSTANCE_ID.fullmatch(value):
        report.error(
            key,
            f"`{_safe_shown(value)}` is not an instance ID; expected `cri-` followed by letters and "
            'digits for Enterprise Edition, or "" (or no instanceId) for Personal Edition',
            line=_line(node),
            field=field,
        )
        return _INVALID
    if re.fullmatch(r"cri-x+", value):
        report.warn(
            key,
            f"`{value}` looks like the guide's placeholder; use your instance's ID (console: Instances)",
            line=_line(node),
            field=field,
        )
    return value


def _f_region(key: str, field: str, node: yaml.Node, report: _Report) -> Any:
    value = _str_field(key, field, node, report)
    if value is _INVALID or value is None:
        return value
    if value != value.lower() and _REGION.fullmatch(value.lower()):
        report.warn(
            key,
            f"region IDs are lower case; read `{value}` as `{value.lower()}`",
            line=_line(node),
            field=field,
        )
        value = value.lower()
    if not _REGION.fullmatch(value):
        report.error(
            key,
            f"`{_safe_shown(value)}` is not a region ID; expected e.g. cn-hangzhou, cn-beijing, "
            "ap-southeast-1",
            line=_line(node),
            field=field,
        )
        return _INVALID
    return value


def _valid_host(domain: str) -> bool:
    host, _, port = domain.partition(":")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        return False
    if not host or len(host) > 253 or "." not in host:
        return host == "localhost"
    return all(_HOST_LABEL.fullmatch(label) for label in host.split("."))


def _f_domains(key: str, field: str, node: yaml.Node, report: _Report) -> Any:
    line = _line(node)
    raw_items: list[str] = []
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            if not isinstance(child, yaml.ScalarNode):
                report.error(
                    key,
                    f"`domains` list items must be host names, not {_kind(child)}",
                    line=_line(child),
                    field=field,
                )
                return _INVALID
            raw_items.extend(_split_list(str(child.value)))
    elif isinstance(node, yaml.ScalarNode):
        if node.tag == _NULL_TAG:
            return None
        raw_items = _split_list(str(node.value))
    else:
        report.error(
            key,
            "`domains` must be a comma-separated string or a YAML list of host names",
            line=line,
            field=field,
        )
        return _INVALID
    out: list[str] = []
    bad = False
    for item in raw_items:
        d = item.strip().strip("\"'").strip()
        if d != item.strip():
            report.warn(
                key,
                f'stray quotes around `{d}` removed; write `domains: "a.com,b.com"` or a YAML list',
                line=line,
                field=field,
            )
        m = re.fullmatch(r"(?i)(https?://)?([^/]*)/*", d)
        if m and m.group(1):
            report.warn(
                key,
                f"`{_safe_shown(d)}`: domains are host names; read as `{m.group(2)}`",
                line=line,
                field=field,
            )
            d = m.group(2)
        if d != d.lower():
            d = d.lower()
        if not d:
            continue
        if not _valid_host(d):
            report.error(
                key,
                f"`{_safe_shown(d)}` is not a host name; expected e.g. "
                "`myreg-registry.cn-hangzhou.cr.aliyuncs.com` (optionally with `:port`)",
                line=line,
                field=field,
            )
            bad = True
            continue
        if d in out:
            report.warn(key, f"`{d}` is listed twice", line=line, field=field)
            continue
        out.append(d)
    if bad:
        return _INVALID
    return tuple(out) or None


def _arn(
    key: str, field: str, node: yaml.Node, report: _Report, pattern: re.Pattern[str], expected: str
) -> Any:
    value = _str_field(key, field, node, report)
    if value is _INVALID or value is None:
        return value
    m = pattern.fullmatch(value)
    if not m:
        report.error(key, f"`{_safe_shown(value)}` is not {expected}", line=_line(node), field=field)
        return _INVALID
    if m.group(1) == ".*":
        report.warn(
            key,
            "`.*` in place of the account ID is the guide's placeholder, not a wildcard; put the "
            "owning account's ID there (e.g. acs:ram::1234567890123456:role/<name>)",
            line=_line(node),
            field=field,
        )
    return value


def _f_role_arn(key: str, field: str, node: yaml.Node, report: _Report) -> Any:
    return _arn(
        key,
        field,
        node,
        report,
        _ROLE_ARN,
        "a RAM role ARN; expected `acs:ram::<account-id>:role/<role-name>`",
    )


def _f_oidc_arn(key: str, field: str, node: yaml.Node, report: _Report) -> Any:
    return _arn(
        key,
        field,
        node,
        report,
        _OIDC_ARN,
        "an OIDC provider ARN; expected `acs:ram::<account-id>:oidc-provider/<name>`",
    )


def _f_expire(key: str, field: str, node: yaml.Node, report: _Report) -> Any:
    expected = (
        f"expected whole seconds from {MIN_EXPIRE_DURATION} to {MAX_EXPIRE_DURATION} "
        f"(default {DEFAULT_EXPIRE_DURATION})"
    )
    if not isinstance(node, yaml.ScalarNode):
        report.error(
            key,
            f"`expireDuration` must be a number, not {_kind(node)}; {expected}",
            line=_line(node),
            field=field,
        )
        return _INVALID
    if node.tag == _NULL_TAG or not str(node.value).strip():
        return DEFAULT_EXPIRE_DURATION
    value, _ = _scalar(node)
    seconds = _as_int(value)
    if seconds is None and isinstance(value, str):
        try:
            seconds_f = parse_duration(value).total_seconds()
        except ValueError:
            seconds_f = None
        if seconds_f is not None and seconds_f.is_integer():
            seconds = int(seconds_f)
            report.warn(
                key,
                f"`{_safe_shown(value)}` read as {seconds} seconds; expireDuration is a number of seconds",
                line=_line(node),
                field=field,
            )
    if seconds is None:
        report.error(
            key,
            f"`{_safe_shown(str(node.value))}` is not a number; {expected}",
            line=_line(node),
            field=field,
        )
        return _INVALID
    if not MIN_EXPIRE_DURATION <= seconds <= MAX_EXPIRE_DURATION:
        report.error(key, f"{seconds} is out of range; {expected}", line=_line(node), field=field)
        return _INVALID
    return seconds


def _f_access_key(key: str, field: str, node: yaml.Node, report: _Report) -> Any:
    value = _str_field(key, field, node, report)
    if isinstance(value, str) and re.fullmatch(r"(?i)x+", value):
        report.warn(
            key, "customAccessKey looks like the guide's placeholder (`xxxxx`)", line=_line(node), field=field
        )
    return value


def _f_secret(key: str, field: str, node: yaml.Node, report: _Report) -> Any:
    value = _str_field(key, field, node, report, secret=True)
    if value is _INVALID or value is None:
        return value
    if re.fullmatch(r"(?i)x+", str(value)):
        report.warn(
            key, "customAccessKeySecret looks like the guide's placeholder", line=_line(node), field=field
        )
    return SecretStr(str(value))


def _f_secret_ref(key: str, field: str, node: yaml.Node, report: _Report) -> Any:
    value = _str_field(key, field, node, report)
    if value is _INVALID or value is None:
        return value
    if not _DNS_SUBDOMAIN.fullmatch(value) or len(value) > 253:
        report.error(
            key,
            f"`{_safe_shown(value)}` is not a Secret name; expected the name of a Secret in "
            f"{CONFIG_NAMESPACE} with keys `access-key-id` and `access-key-secret`",
            line=_line(node),
            field=field,
        )
        return _INVALID
    return value


_FIELD_PARSERS: dict[str, Any] = {
    "instanceId": _f_instance,
    "regionId": _f_region,
    "domains": _f_domains,
    "assumeRoleARN": _f_role_arn,
    "expireDuration": _f_expire,
    "customAccessKey": _f_access_key,
    "customAccessKeySecret": _f_secret,
    "rrsaRoleARN": _f_role_arn,
    "rrsaOIDCProviderRoleARN": _f_oidc_arn,
    "accessKeySecretRef": _f_secret_ref,
}


# ---- the entry points ------------------------------------------------------------------------


def parse_config(data: Mapping[str, str] | None, *, secret_name: str = DEFAULT_SECRET_NAME) -> ConfigResult:
    """Parse the ConfigMap `data`. `None` (no ConfigMap) yields the add-on's defaults.

    Never raises on user input. With any error, `config` is None; warnings never block.
    """
    if data is None:
        return ConfigResult(config=AcrConfig(secret_name=secret_name))
    report = _Report()
    if not isinstance(data, Mapping):
        report.error("data", f"expected a mapping of string keys to string values, got {type(data).__name__}")
        return ConfigResult(config=None, errors=tuple(report.errors))
    for raw_key, raw_value in data.items():
        report.protect(str(raw_key))
        if isinstance(raw_value, str):
            report.protect(raw_value)
    values: dict[str, str] = {}
    unknown: list[str] = []
    for raw_key, raw_value in data.items():
        name = str(raw_key)
        canon, exact = _resolve_key(name, KNOWN_KEYS)
        if canon is None:
            unknown.append(name)
            continue
        if not exact:
            if canon in data:
                report.warn(_key_label(name), f"ignored: it duplicates `{canon}`, which is also set")
                continue
            report.warn(
                _key_label(name), f"read as `{canon}`; ConfigMap keys are case-sensitive, write `{canon}`"
            )
        if raw_value is None:
            value = ""
        elif isinstance(raw_value, str):
            value = raw_value
        elif isinstance(raw_value, bool | int | float):
            value = str(raw_value).lower() if isinstance(raw_value, bool) else str(raw_value)
            report.warn(canon, f"expected a string; read {type(raw_value).__name__} as `{value}`")
        else:
            report.error(
                canon,
                f"expected a string, got {type(raw_value).__name__}; embedded YAML belongs in a "
                "string (`key: |` followed by the indented text)",
            )
            continue
        values[canon] = value
    for name in unknown:
        _unknown_key(name, values, report)

    fields: dict[str, Any] = {"secret_name": secret_name}
    if "service-account" in values:
        fields["service_accounts"] = _parse_service_accounts(
            "service-account", values["service-account"], report
        )
    if "watch-namespace" in values:
        fields["watch_namespaces"] = _parse_namespaces("watch-namespace", values["watch-namespace"], report)
    if "expiring-threshold" in values:
        threshold = _parse_threshold("expiring-threshold", values["expiring-threshold"], report)
        if threshold is not None:
            fields["expiring_threshold"] = threshold
    if "acr-registry-info" in values:
        regs = _parse_registries("acr-registry-info", values["acr-registry-info"], report)
        if regs is not None:
            fields["registries"] = regs
    if "acr-api-version" in values:
        version = _unquote("acr-api-version", values["acr-api-version"], report) or DEFAULT_API_VERSION
        if version != DEFAULT_API_VERSION:
            report.warn(
                "acr-api-version",
                f"`{_safe_shown(version)}` has no effect; only {DEFAULT_API_VERSION} "
                "is meaningful and is always used",
            )
        # kept only when it looks like an API version (it is never used; never keep free text)
        fields["acr_api_version"] = version if re.fullmatch(r"\d{4}-\d{2}-\d{2}", version) else DEFAULT_API_VERSION
    if "notify-email" in values:
        email = values["notify-email"].strip()
        # never used; kept only when it cannot carry a credential pasted by mistake
        fields["notify_email"] = (_safe_shown(email, limit=254) if email else None)
        if email:
            report.warn(
                "notify-email",
                "accepted and ignored: acr-helper sends no e-mail (watch its metrics and events instead)",
            )
    if "rrsa" in values:
        rrsa = _parse_rrsa("rrsa", values["rrsa"], report)
        if rrsa is not None:
            fields["rrsa"] = rrsa
    if "webhook-configuration" in values:
        webhook = _parse_webhook("webhook-configuration", values["webhook-configuration"], report)
        if webhook is not None:
            fields["webhook"] = webhook

    if report.errors:
        return ConfigResult(config=None, errors=tuple(report.errors), warnings=tuple(report.warnings))
    try:
        config = AcrConfig(**fields)
    except Exception:
        report.error("data", "the configuration could not be assembled")
        return ConfigResult(config=None, errors=tuple(report.errors), warnings=tuple(report.warnings))
    _cross_checks(config, report)
    return ConfigResult(config=config, errors=tuple(report.errors), warnings=tuple(report.warnings))


#: scope keys whose absence means a default that takes pull Secrets away from everything else
_SCOPE_KEYS: dict[str, tuple[str, str]] = {
    # key -> (canonical fragment a near miss contains, what applying the default would do)
    "watch-namespace": ("namespace", "remove pull Secrets from every other namespace"),
    "service-account": (
        "serviceaccount",
        "remove the pull Secret from the imagePullSecrets of every other ServiceAccount",
    ),
}


def _scope_near_miss(name: str) -> str | None:
    """The scope key `name` (an unknown key) most likely means, if any."""
    near = _nearest(name, KNOWN_KEYS)
    if near in _SCOPE_KEYS:
        return near
    canon = _canon(name)
    for key, (fragment, _) in _SCOPE_KEYS.items():
        if fragment in canon:
            return key
    return None


def _unknown_key(name: str, values: Mapping[str, str], report: _Report) -> None:
    """An unknown key: a warning naming the nearest known key, or an error when it looks like a
    scope key that is absent (its default would silently shrink the scope to `default`)."""
    scope = _scope_near_miss(name)
    if scope is not None and scope not in values:
        report.error(
            _key_label(name),
            f"`{_safe_shown(name)}` is not a key; did you mean `{scope}`? Not applying the default "
            f"(`default`), which would {_SCOPE_KEYS[scope][1]}",
        )
        return
    near = _nearest(name, KNOWN_KEYS)
    report.warn(
        _key_label(name),
        "unknown key ignored" + (f"; did you mean `{near}`?" if near else f"; known keys: {', '.join(KNOWN_KEYS)}"),
    )


RRSA_DISABLED_WARNING = (
    "rrsaRoleARN is set but `rrsa` is not `enable: true`, so acr-helper ignores rrsaRoleARN (and "
    "rrsaOIDCProviderRoleARN) for this registry and does not use RRSA: the credential is the Secret "
    "kube-system/alibaba-addon-secret if it exists, else the node's worker RAM role. Set the `rrsa` key "
    "to `enable: true` to use RRSA"
)


def _cross_checks(config: AcrConfig, report: _Report) -> None:
    for reg in config.registries:
        if config.expiring_threshold >= timedelta(seconds=reg.expire_duration):
            report.warn(
                "expiring-threshold",
                f"{format_duration(config.expiring_threshold)} is not shorter than the token lifetime of "
                f"item [{reg.index}] (expireDuration {reg.expire_duration}s): its tokens are refreshed at "
                "half their "
                "lifetime instead",
            )
        if (
            reg.rrsa_role_arn
            and not config.rrsa.enable
            and not (reg.custom_access_key or reg.access_key_secret_ref)
        ):
            report.warn(
                "acr-registry-info",
                RRSA_DISABLED_WARNING,
                field=f"[{reg.index}].rrsaRoleARN",
            )


def load_configmap_manifest(text: str) -> tuple[dict[str, str] | None, list[ConfigMessage]]:
    """The `data` of a ConfigMap manifest (or of a bare `data:` fragment as in the guide).

    Accepts a ConfigMap, a multi-document file, or a `kind: List`; picks the ConfigMap named
    `acr-configuration` (or the only ConfigMap). Non-string scalars (`15`, `true`) become strings
    with a warning. Returns (None, messages) when no data can be read; messages carry 1-based
    lines of the manifest under the key `manifest` (or the data key they concern).
    """
    report = _Report()
    mk = "manifest"
    if not isinstance(text, str):
        report.error(mk, "expected YAML text")
        return None, report.messages()
    report.protect(text)
    text = _normalise_text(mk, text, report)
    report.protect(text)  # the same words, as read (odd spaces made plain)
    if _bad_character(mk, text, report):
        return None, report.messages()
    loader: yaml.SafeLoader | None = None
    docs: list[yaml.Node] = []
    try:
        loader = yaml.SafeLoader(text)
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                docs.append(node)
    except yaml.MarkedYAMLError as exc:
        report.error(mk, _yaml_error_message(text, exc), line=_error_line(exc))
        return None, report.messages()
    except yaml.YAMLError:
        report.error(mk, "not valid YAML")
        return None, report.messages()
    except RecursionError:
        report.error(mk, "not valid YAML: nested too deeply")
        return None, report.messages()
    finally:
        if loader is not None:
            loader.dispose()

    candidates: list[tuple[yaml.MappingNode, str | None]] = []  # (object, name)
    fragments: list[yaml.MappingNode] = []

    def visit(node: yaml.Node) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        top = {str(k.value): v for k, v in node.value if isinstance(k, yaml.ScalarNode)}
        kind = top.get("kind")
        kind_s = str(kind.value) if isinstance(kind, yaml.ScalarNode) else None
        if kind_s == "List" and isinstance(top.get("items"), yaml.SequenceNode):
            for item in top["items"].value:
                visit(item)
        elif kind_s == "ConfigMap":
            name = None
            meta = top.get("metadata")
            if isinstance(meta, yaml.MappingNode):
                for k, v in meta.value:
                    if (
                        isinstance(k, yaml.ScalarNode)
                        and k.value == "name"
                        and isinstance(v, yaml.ScalarNode)
                    ):
                        name = str(v.value)
            candidates.append((node, name))
        elif kind_s is None and "data" in top:
            fragments.append(node)

    for doc in docs:
        visit(doc)
    chosen: yaml.MappingNode | None = None
    if candidates:
        named = [c for c in candidates if c[1] == CONFIG_NAME]
        if named:
            chosen = named[0][0]
        else:
            chosen = candidates[0][0]
            if candidates[0][1]:
                report.warn(
                    mk,
                    f"the ConfigMap is named `{_safe_shown(candidates[0][1])}`, not `{CONFIG_NAME}`; "
                    "read anyway",
                    line=_line(chosen),
                )
        if len(named) > 1 or (not named and len(candidates) > 1):
            report.warn(mk, "more than one candidate ConfigMap; using the first", line=_line(chosen))
    elif fragments:
        chosen = fragments[0]
    if chosen is None:
        report.error(
            mk,
            f"no ConfigMap found; expected `kind: ConfigMap` named {CONFIG_NAME}, or a bare `data:` mapping",
        )
        return None, report.messages()
    data_node: yaml.Node | None = None
    for k, v in chosen.value:
        if isinstance(k, yaml.ScalarNode) and k.value == "data":
            data_node = v
        if isinstance(k, yaml.ScalarNode) and k.value == "binaryData":
            report.warn(mk, "binaryData is ignored", line=_line(k))
    if data_node is None or (isinstance(data_node, yaml.ScalarNode) and data_node.tag == _NULL_TAG):
        return {}, report.messages()
    if not isinstance(data_node, yaml.MappingNode):
        report.error(
            mk, f"`data` must be a mapping of keys to strings, got {_kind(data_node)}", line=_line(data_node)
        )
        return None, report.messages()
    data: dict[str, str] = {}
    for name, vnode, _ in _mapping_items(mk, data_node, report, field="data"):
        label = _key_label(name)
        if not isinstance(vnode, yaml.ScalarNode):
            report.error(
                label,
                f"the value must be a string, not {_kind(vnode)}; embedded YAML "
                f"belongs in a block string (`{name}: |` followed by the indented text)",
                line=_line(vnode),
            )
            continue
        if vnode.tag == _NULL_TAG:
            data[name] = ""
            if vnode.value:
                report.warn(
                    label,
                    f'`{vnode.value}` is YAML null; read as an empty string (quote it: `"{vnode.value}"`)',
                    line=_line(vnode),
                )
            continue
        if vnode.tag != _STR_TAG:
            kind = vnode.tag.rsplit(":", 1)[-1]
            shown = "***" if _SECRET_WORD.search(name) else _safe_shown(str(vnode.value))
            report.warn(
                label,
                f"YAML reads `{shown}` as a {kind} and kubectl would reject it; read as the string "
                f'`{shown}` (quote it: `{name}: "{shown}"`)',
                line=_line(vnode),
            )
        data[name] = str(vnode.value)
    if report.errors:
        return None, report.messages()
    return data, report.messages()
