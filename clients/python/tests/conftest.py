import json
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
MANIFEST = REPO / "testdata" / "assertions" / "manifest.json"


@pytest.fixture(scope="session")
def manifest():
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


def vector(manifest, name):
    for v in manifest["vectors"]:
        if v["name"] == name:
            return v
    raise KeyError(name)


KEYS = REPO / "testdata" / "assertions" / "keys"


def signer_kid(manifest, alg):
    """The kid the gateway publishes for the committed key of this algorithm."""
    for k in manifest["jwks"]["keys"]:
        if k["alg"] == alg:
            return k["kid"]
    raise KeyError(alg)


def sign(manifest, claims, *, alg="ES256", key_file=None, kid=None):
    """Signs claims with a committed test key, for tests that need assertions valid now. The
    vectors prove this client reads what the runner's signer writes; these tokens only move the
    clock."""
    import jwt

    key_file = key_file or ("es256.pem" if alg == "ES256" else "eddsa.pem")
    key = (KEYS / key_file).read_bytes()
    headers = {"kid": kid or signer_kid(manifest, alg), "typ": "JWT"}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def alice(manifest, now, **extra):
    claims = {
        "iss": manifest["issuer"],
        "aud": manifest["audience"],
        "sub": "5b7c3c1e-8d1f-4c1a-9f0e-0a1b2c3d4e5f",
        "token_iss": manifest["token_issuer"],
        "iat": int(now),
        "exp": int(now) + 60,
        "jti": "test",
        "email": "alice@acme.example.com",
        "email_verified": True,
        "name": "Alice Liddell",
        "preferred_username": "alice",
        "organization": {"acme": {"id": "0d6f1c8e-3b4a-4f59-9a8e-5c2b1d7e9f01", "tier": ["gold"]}},
        "organization_source": "keycloak",
    }
    claims.update(extra)
    # DROP leaves a claim out, as a route that cannot vouch for it does.
    return {k: v for k, v in claims.items() if v is not DROP}


DROP = object()


@pytest.fixture(scope="session")
def feedwriter(tmp_path_factory):
    """The runner's own feed writer (demo/feedwriter: cache.AppendFeed with orgsync's stream and
    fields), built once."""
    import shutil
    import subprocess

    go = shutil.which("go")
    if go is None:
        pytest.fail("go is not on PATH: the feed tests write entries with the runner's own code")
    out = tmp_path_factory.mktemp("bin") / "feedwriter"
    subprocess.run([go, "build", "-o", str(out), "./demo/feedwriter"], cwd=REPO, check=True)
    return out


@pytest.fixture
def redis_url():
    import os

    url = os.environ.get("REDIS_TEST_URL")
    if not url:
        pytest.fail("REDIS_TEST_URL is not set: the feed tests need a real Redis (scripts/redis.sh start)")
    return url


@pytest.fixture
def feed(redis_url, feedwriter, manifest, request):
    """A clean key prefix on the real Redis, and a function writing changes through the runner,
    signed with the committed test key the vectors' key set publishes (``feed.verifier`` holds
    that set, as an app holds the gateway's)."""
    import subprocess
    import uuid

    import redis

    from apisix_identity.verifier import Verifier

    prefix = f"pytest-{uuid.uuid4().hex[:12]}:"
    client = redis.Redis.from_url(redis_url)

    def write(user, added=(), removed=(), n=1, maxlen=None):
        args = [str(feedwriter), "-redis", redis_url, "-prefix", prefix, "-user", user,
                "-key", str(KEYS / "es256.pem"),
                "-added", ",".join(added), "-removed", ",".join(removed), "-n", str(n)]
        if maxlen:
            args += ["-maxlen", str(maxlen)]
        subprocess.run(args, check=True)

    write.prefix = prefix
    write.redis_url = redis_url
    write.redis = client
    write.stream = prefix + "feed:orgsync:changes"
    write.verifier = Verifier(jwks=manifest["jwks"], issuer=manifest["issuer"], audience=manifest["audience"])
    yield write
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bindir():
    import glob
    import os
    import shutil

    if os.environ.get("PG_BINDIR"):
        return pathlib.Path(os.environ["PG_BINDIR"])
    found = shutil.which("initdb")
    if found:
        return pathlib.Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(pathlib.Path(p).parts[-3]))
    if versions:
        return pathlib.Path(versions[-1]).parent
    pytest.fail("no PostgreSQL server binaries (initdb): scripts/python-tests.sh installs Debian's postgresql")


class PostgresServer:
    """A throwaway PostgreSQL server: its own data directory in a temp dir, a free loopback port,
    trust authentication, run as the postgres user when the tests run as root (the server
    refuses root)."""

    def __init__(self, root):
        import os

        self.bindir = _pg_bindir()
        self.dir = root / "pgdata"
        self.log = root / "pg.log"
        self.port = _free_port()
        self.as_user = []
        if os.geteuid() == 0:
            import shutil

            shutil.chown(root, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args):
        import subprocess

        subprocess.run([*self.as_user, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def init(self):
        self._run(str(self.bindir / "initdb"), "-D", str(self.dir), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")
        self.start()

    def _pg_ctl(self, action, *extra):
        self._run(str(self.bindir / "pg_ctl"), action, "-D", str(self.dir), "-l", str(self.log), "-w",
                  *extra)

    def options(self):
        return ["-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} "
                      "-c fsync=off"]

    def start(self):
        self._pg_ctl("start", *self.options())

    def restart(self):
        self._pg_ctl("restart", "-m", "fast", *self.options())

    def stop(self):
        self._pg_ctl("stop", "-m", "immediate")

    def connect(self):
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                               autocommit=True)


@pytest.fixture(scope="session")
def postgres():
    import shutil
    import tempfile

    # Not under pytest's own temp dir: its parents are root's alone, and the server runs as postgres.
    root = pathlib.Path(tempfile.mkdtemp(prefix="apisix-identity-pg-"))
    server = PostgresServer(root)
    try:
        server.init()
        yield server
    finally:
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - never started, or already stopped
            pass
        shutil.rmtree(root, ignore_errors=True)
