"""The feed command as it runs in production: several processes of `manage.py apisix_identity_feed`
with one name (a rolling update runs two pods) on a real PostgreSQL server and the real Redis."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
PACKAGE = HERE.parent


def _env(postgres, feed, **extra):
    return {**os.environ, "PYTHONPATH": str(PACKAGE), "DJANGO_SETTINGS_MODULE": "tests.pg_settings",
            "FEED_TEST_PG_PORT": str(postgres.port), "FEED_TEST_REDIS_URL": feed.redis_url,
            "FEED_TEST_PREFIX": feed.prefix, **extra}


def _django(postgres, feed, *args, **kwargs):
    return [sys.executable, "-m", "django", *args]


@pytest.fixture
def app_db(postgres, feed):
    """The app's tables on the PostgreSQL server, empty."""
    subprocess.run(_django(postgres, feed, "migrate", "--run-syncdb", "-v", "0"), cwd=PACKAGE,
                   env=_env(postgres, feed), check=True)
    with postgres.connect() as conn:
        conn.execute("TRUNCATE testapp_applied, apisix_identity_feedposition")
    return postgres


def _consumers(n, postgres, feed, tmp_path, position="database", **extra):
    procs = []
    for i in range(n):
        log = open(tmp_path / f"consumer-{i}.log", "wb")
        procs.append(subprocess.Popen(
            _django(postgres, feed, "apisix_identity_feed", "--name", "pods", "--block-ms", "100",
                    "--max-retry-delay", "1", "--position", position),
            cwd=PACKAGE, env=_env(postgres, feed, **extra), stdout=log, stderr=subprocess.STDOUT))
    return procs


def _stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _wait_for(what, check, timeout, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for p in procs:
            if p.returncode is None and p.poll() is not None and p.returncode != -signal.SIGKILL:
                pytest.fail(f"a consumer exited ({p.returncode}) while waiting for {what}: see {p.args}")
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def _applied(postgres):
    with postgres.connect() as conn:
        return conn.execute("SELECT change_id, pid FROM testapp_applied").fetchall()


def _stream_ids(feed):
    return [i.decode() for i, _ in feed.redis.xrange(feed.stream)]


@pytest.mark.parametrize("consumers,changes", [(2, 2000), (3, 3000)])
def test_concurrent_consumers_apply_each_change_once_across_a_kill(app_db, feed, tmp_path, consumers, changes):
    """Consumers of one name race for every change; the one holding the change adding "slow" is
    SIGKILLed inside its transaction (mid-batch: its batch holds the changes before and after).
    Every change of the stream is applied exactly once, by whoever committed it."""
    marker = tmp_path / "slow.pid"
    half = changes // 2
    feed("alice", added=["acme"], n=half)
    procs = _consumers(consumers, app_db, feed, tmp_path, FEED_TEST_SLOW_MARKER=str(marker))
    try:
        feed("alice", added=["slow"])
        feed("bob", added=["globex"], n=changes - half)
        _wait_for("a consumer to stall on the slow change", marker.exists, 120, procs)
        time.sleep(0.2)  # the pid is written before the sleep; let it get there
        victim = int(marker.read_text())
        assert victim in {p.pid for p in procs}
        os.kill(victim, signal.SIGKILL)
        # After the kill: more changes, which the survivors must take too.
        feed("carol", added=["initech"], n=50)
        ids = _stream_ids(feed)
        assert len(ids) == changes + 51
        _wait_for("every change applied", lambda: len(_applied(app_db)) >= len(ids), 300, procs)
        time.sleep(1)  # a double apply would land now
    finally:
        _stop(procs)
    rows = _applied(app_db)
    applied = [c for c, _ in rows]
    assert len(applied) == len(set(applied)), f"{len(applied) - len(set(applied))} change(s) applied twice"
    assert sorted(applied) == sorted(ids), "a change was lost or one not in the stream was applied"
    slow = next(i.decode() for i, f in feed.redis.xrange(feed.stream) if f[b"added"] == b'["slow"]')
    assert [pid for c, pid in rows if c == slow] != [victim], "the killed consumer's transaction was rolled back"
    with app_db.connect() as conn:
        assert conn.execute("SELECT last_id FROM apisix_identity_feedposition WHERE name = 'pods'"
                            ).fetchone()[0] == ids[-1]
    by_pid = {pid for _, pid in rows}
    print(f"{len(ids)} changes applied by {len(by_pid)} consumer process(es)")


@pytest.mark.parametrize("position", ["database", "redis"])
def test_the_command_survives_a_database_restart(app_db, feed, tmp_path, position):
    """With the position in Redis the hook's queries run outside any transaction of ours, so
    nothing but close_old_connections replaces the connection the restart broke."""
    feed("alice", added=["acme"], n=20)
    procs = _consumers(1, app_db, feed, tmp_path, position=position)
    try:
        _wait_for("the first changes", lambda: len(_applied(app_db)) == 20, 60, procs)
        # Down long enough for polls to fail: the first change after it, then the position
        # reload after the failure (outside any transaction) meet the dropped connection.
        app_db.stop()
        feed("bob", added=["globex"], n=20)
        time.sleep(2.5)
        app_db.start()
        _wait_for("the changes after the restart", lambda: len(_applied(app_db)) == 40, 60, procs)
        assert procs[0].poll() is None, "the command is still running"
    finally:
        _stop(procs)
    assert sorted(c for c, _ in _applied(app_db)) == sorted(_stream_ids(feed))
