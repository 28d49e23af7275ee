"""The password file and its hashes (access/passwords.py): what is accepted,
what is refused and how it is said, and the checks themselves.

The hashes below were made by Apache's htpasswd 2.4 (`htpasswd -nbm`,
`htpasswd -nbB`), so these tests need neither the tool nor a network."""

import os
import sys
import unicodedata

import pytest
from support.environment import skip_locally_fail_in_ci

from reactor_http.access import passwords
from reactor_http.access.passwords import APR1, BCRYPT, SCRYPT, PasswordFileError, parse_password_file

APR1_VECTORS = [  # (password, hash) from `htpasswd -nbm u PASSWORD`
    (b"pw", "$apr1$MXI3xW8w$IqlgF3Y4n9iE/ixTv/32b."),
    (b"", "$apr1$9kskzz.6$bBPaVg8mVodX1C/wCgREQ."),
    (b"a", "$apr1$B.EoQKTv$cDsfBiseG/NELPmtr8y7u/"),
    (b"averyveryverylongpasswordthatexceedssixteen0123456789", "$apr1$EdoH9BOp$S3zIb/i8Yzfl8PHWoWhnb."),
    ("ünïcödé".encode(), "$apr1$QJeGBJ58$skoEGZ2NLiOYEQnIfYBBK0"),
]
BCRYPT_SECRET = "$2y$05$B7TcOlAvMia1lAWvhcJ2M.XLlEBqAGvpIuaPW0M9zRkB9CdcMyTem"  # htpasswd -B, "secret"


def require_bcrypt():
    if not passwords.bcrypt_available():
        skip_locally_fail_in_ci("the bcrypt package is not installed (pip install -e '.[test]')")


def parse(text, allow_empty=False):
    return parse_password_file(text.encode(), "users", allow_empty)


# -- the hashes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("password, hashed", APR1_VECTORS)
def test_apr1_is_apaches(password, hashed):
    salt = hashed.split("$")[2].encode()
    assert passwords.apr1(password, salt) == hashed
    assert passwords.verify(APR1, hashed, password)
    assert not passwords.verify(APR1, hashed, password + b"x")


def test_bcrypt_as_htpasswd_makes_it():
    require_bcrypt()
    assert passwords.verify(BCRYPT, BCRYPT_SECRET, b"secret")
    assert not passwords.verify(BCRYPT, BCRYPT_SECRET, b"Secret")
    assert not passwords.verify(BCRYPT, BCRYPT_SECRET, b"sec\x00ret")  # refused by bcrypt: no match


def test_bcrypt_reads_72_bytes_as_htpasswd_did():
    require_bcrypt()
    import bcrypt
    long_password = b"x" * 72
    hashed = bcrypt.hashpw(long_password, bcrypt.gensalt(4)).decode()
    assert passwords.verify(BCRYPT, hashed, long_password + b"anything after the 72nd byte")


def test_scrypt_made_by_hash_password():
    hashed = passwords.hash_password("correct horse")
    assert hashed.startswith("$scrypt$ln=14,r=8,p=5$")
    assert passwords.identify(hashed, "here") == SCRYPT
    assert passwords.verify(SCRYPT, hashed, b"correct horse")
    assert not passwords.verify(SCRYPT, hashed, b"correct horse ")
    assert passwords.hash_password("correct horse") != hashed  # a fresh salt every time


def test_hash_password_normalizes_as_rfc_7617_asks():
    """A client that honours charset="UTF-8" sends NFC (RFC 7617 §2.1): a
    password typed as e + combining accent is checked as the one character."""
    decomposed = unicodedata.normalize("NFD", "café")
    hashed = passwords.hash_password(decomposed)
    assert passwords.verify(SCRYPT, hashed, "café".encode())


def test_scrypt_with_costs_of_its_own():
    """A line made elsewhere with other costs is checked with them."""
    import base64
    import hashlib
    salt = os.urandom(16)
    digest = hashlib.scrypt(b"pw", salt=salt, n=1 << 10, r=4, p=1, dklen=24)
    line = (f"$scrypt$ln=10,r=4,p=1${base64.b64encode(salt).decode().rstrip('=')}"
            f"${base64.b64encode(digest).decode().rstrip('=')}")
    assert passwords.verify(SCRYPT, line, b"pw")


@pytest.mark.parametrize("user", ["", "a:b", "tab\there", " padded", "padded ", "#comment", "nul\x00"])
def test_user_names_the_file_cannot_hold(user):
    with pytest.raises(ValueError):
        passwords.password_line(user, "pw")


def test_an_empty_password_is_refused():
    with pytest.raises(ValueError, match="empty"):
        passwords.password_line("alice", "")


# -- the file --------------------------------------------------------------------------------------


def test_a_file_of_every_accepted_kind():
    require_bcrypt()
    scrypt_line = passwords.password_line("carol", "pw")
    table = parse(f"# the team\n\nalice:{BCRYPT_SECRET}\nbob:{APR1_VECTORS[0][1]}\r\n{scrypt_line}\n")
    assert {user: entry.scheme for user, entry in table.users.items()} == {
        "alice": BCRYPT, "bob": APR1, "carol": SCRYPT}
    assert table.users["bob"].line == 4
    assert table.decoy == table.users["alice"]
    # apr1 is accepted, with one warning naming its line.
    assert len(table.warnings) == 1
    assert "line 4 holds an apr1 MD5 hash" in table.warnings[0] and "htpasswd -B" in table.warnings[0]


def test_the_apr1_warning_names_every_line():
    table = parse(f"a:{APR1_VECTORS[0][1]}\nb:{APR1_VECTORS[1][1]}\n")
    assert "lines 1, 2 hold apr1 MD5 hashes" in table.warnings[0]


@pytest.mark.parametrize("line, words", [
    ("carol:{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=", ["line 2", "refused", "{SHA}", "unsalted", "htpasswd -B"]),
    ("dave:M.E2AM.QNch5s", ["line 2", "refused", "crypt DES", "8 characters"]),
    ("eve:hunter2", ["line 2", "not a hash this server accepts", "plain-text"]),
    ("frank:$5$rounds=5000$abcdefgh$abcdefghijklmnopqrstuvwxyz0123456789ABCDEF", ["line 2", "SHA-crypt"]),
    ("grace:$6$abcdefgh$" + "a" * 86, ["line 2", "SHA-crypt"]),
    ("heidi:$2y$05$tooshort", ["line 2", "malformed bcrypt"]),
    ("ivan:$apr1$toolongsalt$IqlgF3Y4n9iE/ixTv/32b.", ["line 2", "malformed apr1"]),
    ("judy:$scrypt$ln=30,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA", ["line 2", "scrypt costs"]),
    ("ken:$scrypt$ln=14,r=8,p=5$!!$!!", ["line 2", "malformed scrypt"]),
    ("no colon here", ["line 2", "expected USER:HASH"]),
    (":$apr1$MXI3xW8w$IqlgF3Y4n9iE/ixTv/32b.", ["line 2", "expected USER:HASH"]),
    (f"bob:{APR1_VECTORS[1][1]}", ["line 2", "'bob' is already on line 1"]),
])
def test_refused_lines_are_one_line_naming_the_line(line, words):
    with pytest.raises(PasswordFileError) as caught:
        parse(f"bob:{APR1_VECTORS[0][1]}\n{line}\n")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("--auth-file users line 2: ")
    for word in words:
        assert word in message, message
    # Never the hash, or what may be a password in plain text.
    secret = line.partition(":")[2]
    assert not secret or secret not in message


def test_without_bcrypt_a_bcrypt_line_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "bcrypt", None)  # import bcrypt now fails
    assert not passwords.bcrypt_available()
    with pytest.raises(PasswordFileError, match=r"line 1: a bcrypt hash \(htpasswd -B\) needs the bcrypt "
                                                r"package: pip install 'reactor_http\[auth\]'"):
        parse(f"alice:{BCRYPT_SECRET}\n")
    # The other kinds need nothing.
    assert parse(f"bob:{APR1_VECTORS[0][1]}\n").users["bob"].scheme == APR1


def test_an_empty_file_is_a_mistake_at_start_and_a_decision_later():
    with pytest.raises(PasswordFileError, match="no users"):
        parse("# nobody yet\n")
    table = parse("", allow_empty=True)
    assert dict(table.users) == {} and table.decoy is None


def test_not_utf8_and_not_there(tmp_path):
    with pytest.raises(PasswordFileError, match="not UTF-8"):
        parse_password_file(b"\xff\xfe:x\n", "users")
    with pytest.raises(PasswordFileError, match="No such file"):
        passwords.read_password_file(str(tmp_path / "missing"))


# -- reading it again (an executor job) -------------------------------------------------------------


def test_reread(tmp_path):
    path = tmp_path / "users"
    path.write_text(f"bob:{APR1_VECTORS[0][1]}\n")
    stamp = passwords.file_stamp(str(path))
    unchanged = passwords.reread(str(path), stamp, force=False)
    assert (unchanged.table, unchanged.error) == (None, None)
    forced = passwords.reread(str(path), stamp, force=True)
    assert list(forced.table.users) == ["bob"] and forced.stamp == stamp
    path.write_text(f"bob:{APR1_VECTORS[0][1]}\nann:{APR1_VECTORS[1][1]}\n")
    changed = passwords.reread(str(path), stamp, force=False)
    assert list(changed.table.users) == ["bob", "ann"] and changed.stamp != stamp
    path.write_text("bob:{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=\n")
    refused = passwords.reread(str(path), changed.stamp, force=False)
    assert refused.table is None and "line 1" in refused.error and "{SHA}" in refused.error
    path.write_text("")
    emptied = passwords.reread(str(path), changed.stamp, force=False)
    assert dict(emptied.table.users) == {}
    path.unlink()
    gone = passwords.reread(str(path), changed.stamp, force=False)
    assert gone.table is None and "No such file" in gone.error
