"""The data-segment encryption of HJ 212-2025 Appendix A, behind a pluggable block cipher.

What we know of Appendix A (docs/hj212.md, assumptions): the data segment is encrypted in
blocks of 16 characters, a remainder shorter than a block stays plain, and the frame's CRC
is the plain segment's. Which cipher and which key the bureau uses is given to the site
with its MN and password; public summaries do not say. We offer SM4 (GB/T 32907, the
national 128-bit block cipher, whose 16-byte block matches the appendix) in ECB mode, with
the key from the site configuration; another cipher is one class with the two methods.
Encryption is off unless a platform's config names a cipher.
"""

from __future__ import annotations

from typing import Protocol

from edge_agent.hj212.frame import Transform

BLOCK = 16


class BlockCipher(Protocol):
    def encrypt_block(self, block: bytes) -> bytes: ...
    def decrypt_block(self, block: bytes) -> bytes: ...


def blockwise(apply: Transform, segment: bytes) -> bytes:
    """`apply` to every whole 16-byte block of `segment`; the remainder as it is."""
    whole = len(segment) - len(segment) % BLOCK
    blocks = (apply(segment[at : at + BLOCK]) for at in range(0, whole, BLOCK))
    return b"".join(blocks) + segment[whole:]


def transforms(cipher: BlockCipher) -> tuple[Transform, Transform]:
    """(encrypt, decrypt) of whole data segments, for frame.encode and FrameReader."""
    return (
        lambda segment: blockwise(cipher.encrypt_block, segment),
        lambda segment: blockwise(cipher.decrypt_block, segment),
    )


class CipherUnavailable(RuntimeError):
    """The cipher a config names cannot be made here (its library is missing)."""


class Sm4Ecb:
    """SM4 in ECB mode, one 16-byte block at a time (the `cryptography` package)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != BLOCK:
            raise ValueError(f"an SM4 key is 16 bytes, not {len(key)}")
        try:
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        except ImportError as exc:  # an optional dependency: the extra `hj212-2025`
            raise CipherUnavailable(
                "SM4 needs the Python package cryptography (pip install 'edge-agent[hj212-2025]')"
            ) from exc
        self._cipher = Cipher(algorithms.SM4(key), modes.ECB())

    def encrypt_block(self, block: bytes) -> bytes:
        encryptor = self._cipher.encryptor()
        return encryptor.update(block) + encryptor.finalize()

    def decrypt_block(self, block: bytes) -> bytes:
        decryptor = self._cipher.decryptor()
        return decryptor.update(block) + decryptor.finalize()


CIPHERS = {"sm4-ecb": Sm4Ecb}
