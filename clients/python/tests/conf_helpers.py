import time

from .conftest import MANIFEST, alice, sign


def assertion_for(manifest, *, now=None, key_file=None, **claims):
    now = time.time() if now is None else now
    return sign(manifest, alice(manifest, now, **claims), key_file=key_file)


__all__ = ["assertion_for", "MANIFEST"]
