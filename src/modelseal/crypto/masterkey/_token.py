"""This process's PKCS#11 modules and token logins, shared by every :class:`Pkcs11MasterKey`.

Two facts of PKCS#11 make these process-wide:

* python-pkcs11 calls ``C_Initialize(NULL)``, by which the application promises never to call the
  module from two threads at once (SoftHSM2 then switches its own locking off). So every call into
  a module goes through that module's one lock (:attr:`Module.lock`).
* Login state belongs to the application, not to a session: a second ``C_Login`` fails and any
  ``C_Logout`` logs every session out. So the process logs in to a token once, in one session
  (:class:`Link`) shared by every master key open on that token and closed with the last of them.
  The PIN is kept to log in again if the token drops the session (an HSM restart); a key opened
  with another PIN than the live login's is refused as a wrong PIN.

PKCS#11 sessions do not survive ``fork``: open master keys in the process that uses them.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pkcs11
from pkcs11 import exceptions as p11

from modelseal.crypto.masterkey.base import MasterKeyError

__all__ = ["Link", "Module", "attach", "close_quietly", "detach", "load_module"]

_SESSION_LOST = (
    p11.SessionHandleInvalid,
    p11.SessionClosed,
    p11.DeviceRemoved,
    p11.DeviceError,
    p11.TokenNotPresent,
    p11.UserNotLoggedIn,
    p11.KeyHandleInvalid,
    p11.ObjectHandleInvalid,
)
_HANDLE_GONE = (p11.SessionHandleInvalid, p11.SessionClosed)
_WRONG_PIN = (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange)

T = TypeVar("T")
log = logging.getLogger(__name__)


class Module:
    """One loaded PKCS#11 module, the lock every call into it takes, and its logged-in tokens."""

    __slots__ = ("lib", "links", "lock", "path")

    def __init__(self, path: str, lib: Any) -> None:
        self.path = path
        self.lib = lib
        self.lock = threading.Lock()
        self.links: dict[bytes, Link] = {}  # by token serial


_MODULES: dict[str, Module] = {}
_MODULES_LOCK = threading.Lock()


def load_module(path: str) -> Module:
    """The module at ``path``, loaded and initialised once per process."""
    real = os.path.realpath(path)
    with _MODULES_LOCK:
        module = _MODULES.get(real)
        if module is not None:
            return module
        if not os.path.isfile(real):
            raise MasterKeyError(
                f"PKCS#11 module {path} does not exist; give the path of the module's shared "
                "library (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)"
            )
        try:
            lib = pkcs11.lib(path)
        except p11.PKCS11Error as exc:
            if type(exc) is p11.PKCS11Error:  # dlopen or C_GetFunctionList failed
                raise MasterKeyError(
                    f"PKCS#11 module {path} could not be loaded ({exc}); give the path of a "
                    "PKCS#11 shared library"
                ) from exc
            raise MasterKeyError(
                f"PKCS#11 module {path} failed to initialise ({type(exc).__name__}); for SoftHSM2, "
                "check that SOFTHSM2_CONF names a readable configuration whose token directory exists"
            ) from exc
        module = _MODULES[real] = Module(path, lib)
        return module


class Link:
    """This process's login to one token, shared by every master key open on it.

    All methods run with the module lock held.
    """

    __slots__ = ("_pin", "label", "module", "serial", "session", "token", "users")

    def __init__(self, module: Module, token: Any, label: str, pin: str) -> None:
        self.module = module
        self.label = label
        self.token = token
        self.serial: bytes = token.serial
        self._pin = pin.encode("utf-8")
        self.session: Any = _login(token, pin, label)
        self.users = 0

    def pin_matches(self, pin: str) -> bool:
        return hmac.compare_digest(self._pin, pin.encode("utf-8"))

    def call(self, operation: Callable[[Any], T]) -> T:
        """``operation(session)``; when the token has dropped the session, log in again once."""
        try:
            return operation(self.session)
        except p11.PKCS11Error as exc:
            if not session_lost(exc):
                raise
            log.warning(
                "lost the session to PKCS#11 token %r (%s); logging in again",
                self.label,
                type(exc).__name__,
            )
            handle_gone = isinstance(exc, _HANDLE_GONE) or type(exc) is p11.PKCS11Error
        self._relogin(close_old=not handle_gone)
        try:
            return operation(self.session)
        except p11.PKCS11Error as exc:
            if not session_lost(exc):
                raise
            raise MasterKeyError(
                f"lost the session to PKCS#11 token '{self.label}' again right after logging in "
                f"({type(exc).__name__}); check the token and its module"
            ) from exc

    def close(self) -> None:
        close_quietly(self.session)

    def _relogin(self, *, close_old: bool) -> None:
        if close_old:  # a dead handle may already name another session: leave it alone
            close_quietly(self.session)
        if not self.module.lib.initialized:
            self.module.lib.initialize()
        token = _find_token(self.module, self.label)
        if token.serial != self.serial:
            raise MasterKeyError(
                f"PKCS#11 token '{self.label}' was replaced by another token (serial "
                f"{token.serial.decode(errors='replace')}); open the master key again"
            )
        self.token = token
        self.session = _login(token, self._pin.decode("utf-8"), self.label)


def attach(module: Module, token_label: str, pin: str) -> Link:
    """The live login to ``token_label``, made now if needed (module lock held)."""
    token = _find_token(module, token_label)
    link = module.links.get(token.serial)
    if link is None:
        link = module.links[token.serial] = Link(module, token, token_label, pin)
    elif not link.pin_matches(pin):
        raise _wrong_pin(token_label)
    link.users += 1
    return link


def detach(module: Module, link: Link) -> None:
    link.users -= 1
    if link.users <= 0:
        if module.links.get(link.serial) is link:
            del module.links[link.serial]
        link.close()


def _find_token(module: Module, label: str) -> Any:
    try:
        return module.lib.get_token(token_label=label)
    except p11.NoSuchToken:
        raise MasterKeyError(
            f"PKCS#11 token '{label}' not found in {module.path}; run {_list_tokens(module.path)}"
        ) from None
    except p11.MultipleTokensReturned:
        raise MasterKeyError(
            f"more than one PKCS#11 token in {module.path} is labelled '{label}'; "
            "give each token a unique label"
        ) from None
    except p11.PKCS11Error as exc:
        raise MasterKeyError(
            f"could not list the tokens of PKCS#11 module {module.path} ({type(exc).__name__}); "
            f"run {_list_tokens(module.path)}"
        ) from exc


def _list_tokens(path: str) -> str:
    if "softhsm" in os.path.basename(os.path.realpath(path)):
        return "softhsm2-util --show-slots"
    return f"pkcs11-tool --module {path} --list-token-slots"


def _login(token: Any, pin: str, label: str) -> Any:
    try:
        return token.open(user_pin=pin)
    except _WRONG_PIN:
        raise _wrong_pin(label) from None
    except p11.PinLocked:
        raise MasterKeyError(
            f"PKCS#11 token '{label}' is locked after too many wrong PINs; "
            "the token's security officer must set a new user PIN"
        ) from None
    except p11.UserPinNotInitialized:
        raise MasterKeyError(
            f"PKCS#11 token '{label}' has no user PIN yet; initialise the token with a user PIN"
        ) from None
    except p11.UserAlreadyLoggedIn:
        # Code outside this module logged the process in (the PIN cannot be checked again);
        # that login serves these sessions too.
        log.warning("PKCS#11 token %r was already logged in by this process", label)
        return token.open()
    except p11.PKCS11Error as exc:
        raise MasterKeyError(
            f"PKCS#11 token '{label}' refused the login ({type(exc).__name__})"
        ) from exc


def _wrong_pin(label: str) -> MasterKeyError:
    return MasterKeyError(
        f"wrong PIN for PKCS#11 token '{label}'",
        hint="check the PIN; after too many wrong tries the token locks",
    )


def session_lost(exc: p11.PKCS11Error) -> bool:
    """Whether ``exc`` means the session (not the operation) failed, so a new login may help."""
    # python-pkcs11 raises the bare base class for CKR_CRYPTOKI_NOT_INITIALIZED.
    return isinstance(exc, _SESSION_LOST) or type(exc) is p11.PKCS11Error


def close_quietly(session: Any) -> None:
    try:
        session.close()
    except p11.PKCS11Error as exc:  # already gone with the token or the module
        log.debug("closing a PKCS#11 session failed: %s", type(exc).__name__)
