"""The password file (``--auth-file``) and the hashes it may hold.

The file is the one Apache's ``htpasswd`` makes: a line ``user:hash`` per
user; empty lines and lines starting with ``#`` are skipped. Which hashes are
accepted is decided by what a stolen copy of the file would give away:

- bcrypt (``$2y$``, ``$2b$``, ``$2a$``: ``htpasswd -B``): accepted. It is slow
  on purpose and salted. bcrypt is not in the standard library: it is the
  optional extra ``pip install 'reactor_http[auth]'``; without it the server
  still runs, and a file with a bcrypt line is refused at start in one line
  that says what to install.
- scrypt (``$scrypt$ln=14,r=8,p=5$salt$hash``, PHC string format): accepted;
  ``reactor-http hash-password`` makes it with the standard library's
  ``hashlib.scrypt``, at OWASP's recommended cost (N=2^14, r=8, p=5: 16 MiB
  and some 0.15 s a check on a small machine).
- apr1 (``$apr1$``: ``htpasswd -m``, and htpasswd's default): accepted, with
  a warning at start naming the lines. It is salted but fast (1000 rounds of
  MD5), so a stolen file is cracked far sooner than a bcrypt one; refusing
  it would refuse the file most people already have.
- refused at start, with one line naming the line of the file: ``{SHA}``
  (``htpasswd -s``: unsalted SHA-1, looked up in precomputed tables at once),
  crypt DES (``htpasswd -d``: 8 characters of the password and a 12-bit
  salt), the password in plain text (``htpasswd -p``), and anything else
  (SHA-crypt ``$5$``/``$6$`` from ``htpasswd -2``/``-5`` is not checked
  here: make those lines again with ``-B``).

A message never quotes the hash, or the password: a refused line may be a
plain-text password. Checking a password (``verify``) is slow on purpose and
runs on the executor, never on the loop thread (basic.py sees to it);
comparisons are constant-time (``hmac.compare_digest``, and bcrypt's own).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

BCRYPT, APR1, SCRYPT = "bcrypt", "apr1", "scrypt"

INSTALL_BCRYPT = "pip install 'reactor_http[auth]'"
MAKE_AGAIN = "make it again with htpasswd -B or reactor-http hash-password"

_BCRYPT = re.compile(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}")
_APR1 = re.compile(r"\$apr1\$([^$]{1,8})\$[./A-Za-z0-9]{22}")
_SCRYPT = re.compile(r"\$scrypt\$ln=([0-9]{1,2}),r=([0-9]{1,2}),p=([0-9]{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)")
_CRYPT_DES = re.compile(r"[./A-Za-z0-9]{13}")

# The scrypt costs hash-password uses (OWASP's N=2^14, r=8, p=5), and the
# largest a file may ask for: a hostile or mistaken line must not make one
# check take gigabytes.
SCRYPT_LN, SCRYPT_R, SCRYPT_P = 14, 8, 5
SCRYPT_MAX_LN, SCRYPT_MAX_R, SCRYPT_MAX_P = 20, 32, 16
SCRYPT_SALT_BYTES, SCRYPT_HASH_BYTES = 16, 32

# bcrypt reads at most 72 bytes of a password; htpasswd -B hashed those.
BCRYPT_MAX_PASSWORD = 72


class PasswordFileError(Exception):
    """A password file that cannot be used: one line saying where and why."""


@dataclass(frozen=True)
class Entry:
    """One user's line: the scheme and the hash text, and where it was."""

    user: str
    scheme: str
    hash: str
    line: int


@dataclass(frozen=True)
class PasswordTable:
    """The users of one reading of the file."""

    users: Mapping[str, Entry]
    warnings: tuple[str, ...] = ()

    @property
    def decoy(self) -> Entry | None:
        """An entry to check an unknown user's password against, so that the
        time an answer takes does not tell which users exist."""
        return next(iter(self.users.values()), None)


# -- reading the file ----------------------------------------------------------------------------


def read_password_file(path: str, allow_empty: bool = False) -> PasswordTable:
    """The file's users, or PasswordFileError (also for OSError)."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise PasswordFileError(f"--auth-file {path}: {error.strerror or error}") from None
    return parse_password_file(data, path, allow_empty)


def parse_password_file(data: bytes, path: str, allow_empty: bool = False) -> PasswordTable:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PasswordFileError(f"--auth-file {path}: not UTF-8 text") from None
    users: dict[str, Entry] = {}
    apr1_lines = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"--auth-file {path} line {number}"
        user, colon, hashed = line.partition(":")
        if not colon or not user or not hashed:
            raise PasswordFileError(f"{where}: expected USER:HASH")
        if user in users:
            raise PasswordFileError(f"{where}: user {user!r} is already on line {users[user].line}")
        scheme = identify(hashed, where)
        if scheme == APR1:
            apr1_lines.append(number)
        users[user] = Entry(user, scheme, hashed, number)
    if not users and not allow_empty:
        raise PasswordFileError(f"--auth-file {path}: no users in it")
    warnings: tuple[str, ...] = ()
    if apr1_lines:
        which = ", ".join(map(str, apr1_lines))
        lines, what, them = (("lines", "hold apr1 MD5 hashes", "them") if len(apr1_lines) > 1
                             else ("line", "holds an apr1 MD5 hash", "it"))
        warnings = (f"--auth-file {path}: {lines} {which} {what} (htpasswd -m), which a stolen copy of "
                    f"the file gives up quickly; accepted, but make {them} again with htpasswd -B or "
                    f"reactor-http hash-password",)
    return PasswordTable(users, warnings)


def identify(hashed: str, where: str) -> str:
    """The scheme of a hash, or PasswordFileError saying why it is refused."""
    if hashed.startswith("$2"):
        if not _BCRYPT.fullmatch(hashed):
            raise PasswordFileError(f"{where}: a malformed bcrypt hash")
        if not bcrypt_available():
            raise PasswordFileError(f"{where}: a bcrypt hash (htpasswd -B) needs the bcrypt package: "
                                    f"{INSTALL_BCRYPT}")
        return BCRYPT
    if hashed.startswith("$apr1$"):
        if not _APR1.fullmatch(hashed):
            raise PasswordFileError(f"{where}: a malformed apr1 hash")
        return APR1
    if hashed.startswith("$scrypt$"):
        _scrypt_parameters(hashed, where)
        return SCRYPT
    if hashed.startswith("{SHA}"):
        raise PasswordFileError(f"{where}: refused: {{SHA}} (htpasswd -s) is unsalted SHA-1, which a "
                                f"stolen copy of the file gives up at once; {MAKE_AGAIN}")
    if hashed.startswith(("$5$", "$6$")):
        raise PasswordFileError(f"{where}: SHA-crypt (htpasswd -2 or -5) is not supported; {MAKE_AGAIN}")
    if _CRYPT_DES.fullmatch(hashed):
        raise PasswordFileError(f"{where}: refused: crypt DES (htpasswd -d) uses only 8 characters of "
                                f"the password; {MAKE_AGAIN}")
    raise PasswordFileError(f"{where}: not a hash this server accepts (bcrypt, apr1 or scrypt; a "
                            f"plain-text password, htpasswd -p, is refused); {MAKE_AGAIN}")


def bcrypt_available() -> bool:
    try:
        import bcrypt  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Reread:
    """What ``reread`` found: the file unchanged (``table`` None, no
    ``error``), a new table with its stamp, or an error to report."""

    stamp: tuple | None = None
    table: PasswordTable | None = None
    error: str | None = None


def file_stamp(path: str) -> tuple:
    """What says the file changed: its inode (an editor that writes a new
    file and renames it), modification time and size. OSError if gone."""
    status = os.stat(path)
    return status.st_ino, status.st_mtime_ns, status.st_size


def reread(path: str, stamp: tuple | None, force: bool) -> Reread:
    """An executor job (a stat, and perhaps a read): the file again if its
    stamp changed, or if ``force`` (SIGHUP). Never raises: what went wrong
    comes back as ``error``, and the users read before stay in force."""
    try:
        new_stamp = file_stamp(path)
        if new_stamp == stamp and not force:
            return Reread()
        # An emptied file is taken at its word: nobody may come in.
        return Reread(new_stamp, read_password_file(path, allow_empty=True))
    except OSError as error:
        return Reread(error=f"--auth-file {path}: {error.strerror or error}")
    except PasswordFileError as error:
        return Reread(error=str(error))
    except Exception as error:  # a bug: reported, and the server goes on with the old users
        return Reread(error=f"--auth-file {path}: unexpected {type(error).__name__}: {error}")


# -- checking a password (on the executor) --------------------------------------------------------


def verify(scheme: str, hashed: str, password: bytes) -> bool:
    """Whether ``password`` is the one ``hashed`` was made from. Slow on
    purpose: an executor job."""
    if scheme == BCRYPT:
        import bcrypt
        try:
            return bool(bcrypt.checkpw(password[:BCRYPT_MAX_PASSWORD], hashed.encode("ascii")))
        except ValueError:  # a NUL byte, say: no password of the file has one
            return False
    if scheme == APR1:
        match = _APR1.fullmatch(hashed)
        assert match is not None  # identify() made sure
        return hmac.compare_digest(apr1(password, match.group(1).encode("utf-8")).encode("ascii"),
                                   hashed.encode("ascii"))
    if scheme == SCRYPT:
        ln, r, p, salt, expected = _scrypt_parameters(hashed, "")
        return hmac.compare_digest(_scrypt(password, salt, ln, r, p, len(expected)), expected)
    raise ValueError(f"unknown scheme {scheme!r}")


_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def apr1(password: bytes, salt: bytes) -> str:
    """Apache's apr1 MD5 crypt (apr_md5.c, after FreeBSD's MD5-crypt):
    ``$apr1$salt$hash``."""
    magic = b"$apr1$"
    salt = salt[:8]
    alternate = hashlib.md5(password + salt + password).digest()
    context = bytearray(password + magic + salt)
    for remaining in range(len(password), 0, -16):
        context += alternate[:min(16, remaining)]
    length = len(password)
    while length:
        context += b"\x00" if length & 1 else password[:1]
        length >>= 1
    final = hashlib.md5(context).digest()
    for round_number in range(1000):
        step = bytearray(password if round_number & 1 else final)
        if round_number % 3:
            step += salt
        if round_number % 7:
            step += password
        step += final if round_number & 1 else password
        final = hashlib.md5(step).digest()
    encoded = []
    for first, second, third in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)):
        encoded.append(_to64(final[first] << 16 | final[second] << 8 | final[third], 4))
    encoded.append(_to64(final[11], 2))
    return f"$apr1${salt.decode('utf-8', 'replace')}${''.join(encoded)}"


def _to64(value: int, count: int) -> str:
    characters = []
    for _ in range(count):
        characters.append(_ITOA64[value & 0x3F])
        value >>= 6
    return "".join(characters)


def _scrypt_parameters(hashed: str, where: str) -> tuple[int, int, int, bytes, bytes]:
    match = _SCRYPT.fullmatch(hashed)
    if match is None:
        raise PasswordFileError(f"{where}: a malformed scrypt hash")
    ln, r, p = (int(match.group(index)) for index in (1, 2, 3))
    if not (1 <= ln <= SCRYPT_MAX_LN and 1 <= r <= SCRYPT_MAX_R and 1 <= p <= SCRYPT_MAX_P):
        raise PasswordFileError(f"{where}: scrypt costs beyond what this server checks "
                                f"(ln up to {SCRYPT_MAX_LN}, r up to {SCRYPT_MAX_R}, p up to {SCRYPT_MAX_P})")
    try:
        salt, expected = (base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
                          for text in (match.group(4), match.group(5)))
    except binascii.Error:
        raise PasswordFileError(f"{where}: a malformed scrypt hash") from None
    if len(salt) < 8 or len(expected) < 16:
        raise PasswordFileError(f"{where}: an scrypt salt under 8 bytes or a hash under 16")
    return ln, r, p, salt, expected


def _scrypt(password: bytes, salt: bytes, ln: int, r: int, p: int, length: int) -> bytes:
    n = 1 << ln
    # What OpenSSL needs (128 r N for the big array, 128 r p for the blocks), and room to spare.
    memory = 128 * r * (n + p + 2) + (1 << 20)
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=memory, dklen=length)


# -- making a line (reactor-http hash-password) -----------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def hash_password(password: str) -> str:
    """An scrypt hash of ``password`` in the file's format. The text is put
    in Unicode Normalization Form C first, as RFC 7617 §2.1 asks a client to
    do before it sends it (``charset="UTF-8"``), so that the same characters
    typed two ways give the same bytes."""
    data = unicodedata.normalize("NFC", password).encode("utf-8")
    salt = os.urandom(SCRYPT_SALT_BYTES)
    digest = _scrypt(data, salt, SCRYPT_LN, SCRYPT_R, SCRYPT_P, SCRYPT_HASH_BYTES)
    return f"$scrypt$ln={SCRYPT_LN},r={SCRYPT_R},p={SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_user_name(user: str) -> str:
    """A user name for the file: no colon (RFC 7617 §2: the user-id cannot
    hold one), no control character, not empty. ValueError otherwise."""
    if not user or ":" in user or any(ord(character) < 0x20 or ord(character) == 0x7F for character in user):
        raise ValueError(f"a user name must be non-empty, with no ':' and no control character: {user!r}")
    if user != user.strip() or user.startswith("#"):
        raise ValueError(f"a user name may not start with '#' or a space, or end with a space: {user!r}")
    return user


def password_line(user: str, password: str) -> str:
    """The line ``user:hash`` for the file."""
    if not password:
        raise ValueError("the password is empty")
    return f"{check_user_name(user)}:{hash_password(password)}"
