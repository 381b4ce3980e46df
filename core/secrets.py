"""Admin secrets: a salted slow hash, and a limit on guessing attempts.

The board's admin pages and every study's admin page accept a secret a person may choose, so it
is stored only as a salted scrypt hash (RFC 7914; n = 2**14, r = 8, p = 1, about 16 MiB and tens of
milliseconds per check) and compared in constant time. :class:`AttemptLimiter` bounds online
guessing: after ``max_failures`` wrong secrets from one key (a browser session) further attempts
are refused for ``lockout_s`` seconds, and every failure costs ``delay_s`` before it answers.

Example:
    >>> stored = hash_secret("correct horse")
    >>> stored.startswith("scrypt$"), check_secret("correct horse", stored), check_secret("x", stored)
    (True, True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections.abc import Callable

__all__ = ["hash_secret", "check_secret", "AttemptLimiter"]

_N, _R, _P = 2**14, 8, 1


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """``scrypt$<salt hex>$<digest hex>`` of ``secret`` (a fresh 16-byte salt unless given)."""
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P)
    return f"scrypt${salt.hex()}${digest.hex()}"


def check_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` matches a :func:`hash_secret` value (constant-time comparison)."""
    try:
        scheme, salt_hex, _ = stored.split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    return hmac.compare_digest(hash_secret(secret, salt), stored)


class AttemptLimiter:
    """Counts failed secret checks per key and refuses further checks after too many.

    Thread-safe (Streamlit sessions are threads of one process). State is in memory: a restart
    clears it, which is acceptable because every attempt still costs a scrypt evaluation.

    Args:
        max_failures: wrong attempts allowed per key before a lockout.
        lockout_s: how long a locked-out key is refused (seconds).
        delay_s: pause after every failed attempt (seconds), slowing scripted guessing.
        clock: time source (seconds), replaceable in tests.
        sleep: pause function, replaceable in tests.
    """

    def __init__(
        self,
        max_failures: int = 5,
        lockout_s: float = 300.0,
        delay_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_failures, self.lockout_s, self.delay_s = max_failures, lockout_s, delay_s
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (failures, time of the last)

    def locked_for(self, key: str) -> float:
        """Seconds until ``key`` may try again (0 when it may try now)."""
        with self._lock:
            count, last = self._failures.get(key, (0, 0.0))
            if count < self.max_failures:
                return 0.0
            remaining = last + self.lockout_s - self._clock()
            if remaining <= 0:
                del self._failures[key]
                return 0.0
            return remaining

    def check(self, key: str, secret: str, stored: str | None) -> bool:
        """Check ``secret`` against ``stored`` for ``key``, counting failures.

        Returns False without checking while ``key`` is locked out (see :meth:`locked_for`).
        """
        if self.locked_for(key) > 0:
            return False
        ok = stored is not None and check_secret(secret, stored)
        if ok:
            with self._lock:
                self._failures.pop(key, None)
            return True
        with self._lock:
            count, _ = self._failures.get(key, (0, 0.0))
            self._failures[key] = (count + 1, self._clock())
        self._sleep(self.delay_s)
        return False
