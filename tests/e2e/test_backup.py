"""The box's upkeep (docs/install.md): `hnth backup` while the server runs and writes, `hnth
restore` only with the server stopped, one server per data folder, and the systemd units that
run it all (checked by systemd-analyze, their command lines by the binary itself)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile

from proto_util import REPO, add_accounts, binary, browser_session, own_server

PASSWORD = "Backup-matkhau-2024!"


def hnth(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary(), *args], capture_output=True, text=True, timeout=120)


def add_account(srv, username: str) -> None:
    add_accounts(srv, [(username, "leadership", None, None)])


def accounts(srv) -> set[str]:
    return {u for (u,) in srv.query("SELECT username FROM accounts")}


def test_backup_while_running_and_restore_when_stopped(inside_netns):
    copies = tempfile.mkdtemp(prefix="hnth-backups-")
    with own_server("backup", PASSWORD) as srv:
        add_account(srv, "truoc-sao-luu")
        run = hnth("backup", "--data-dir", srv.data_dir, "--to", copies, "--keep", "3")
        assert run.returncode == 0, run.stderr
        m = re.search(r"backup written to (\S+) \((\d+) bytes\): schema \d+, (\d+) accounts", run.stdout)
        assert m, run.stdout
        copy = m.group(1)
        assert os.path.dirname(copy) == copies and os.path.basename(copy).startswith("hnth-")
        assert int(m.group(3)) == len(accounts(srv))
        add_account(srv, "sau-sao-luu")

        # A restore under the running server is refused with one line, nothing replaced.
        run = hnth("restore", "--data-dir", srv.data_dir, "--from", copy)
        assert run.returncode == 1, run.stdout
        assert run.stderr.startswith("hnth: another hnth is running on the data folder"), run.stderr
        assert "sau-sao-luu" in accounts(srv)
        # So is a second server on the same folder.
        second = hnth("demo", "--data-dir", srv.data_dir, "--http", "127.0.0.1:0", "--udp", "10.77.0.1:0",
                      "--tls", "off", "--demo-password", PASSWORD)
        assert second.returncode == 1 and "another hnth is running" in second.stderr, second.stderr

        srv.stop()
        run = hnth("restore", "--data-dir", srv.data_dir, "--from", copy)
        assert run.returncode == 0, run.stderr
        assert "before-restore-" in run.stdout and "restored" in run.stdout, run.stdout
        kept = [f for f in os.listdir(srv.data_dir) if f.startswith("hnth.db.before-restore-")]
        assert len(kept) == 1, os.listdir(srv.data_dir)

        srv.start()
        names = accounts(srv)
        assert "truoc-sao-luu" in names and "sau-sao-luu" not in names, names
        # The restored box works: the account made before the copy logs in.
        browser_session(srv.base, "truoc-sao-luu", PASSWORD)


def test_bad_backup_and_restore_arguments_say_why(inside_netns):
    data = tempfile.mkdtemp(prefix="hnth-backup-bad-")
    run = hnth("backup", "--data-dir", data, "--to", data)
    assert run.returncode == 1 and run.stderr.startswith("hnth: no database at"), run.stderr
    junk = os.path.join(data, "junk.db")
    with open(junk, "wb") as f:
        f.write(b"this is not a database")
    run = hnth("restore", "--data-dir", data, "--from", junk)
    assert run.returncode == 1 and "junk.db" in run.stderr, run.stderr
    assert not os.path.exists(os.path.join(data, "hnth.db"))


def test_the_systemd_units_verify_and_their_commands_parse(inside_netns):
    units = REPO / "packaging"
    tmp = tempfile.mkdtemp(prefix="hnth-units-")
    names = ["hnth.service", "hnth-backup.service", "hnth-backup.timer"]
    execs = []
    for name in names:
        text = (units / name).read_text(encoding="utf-8")
        if name == "hnth.service":
            assert re.search(r"^Restart=always$", text, re.M), "the server must come back after any exit"
            assert re.search(r"^KillSignal=SIGTERM$", text, re.M)
        text = text.replace("/usr/local/bin/hnth", binary())
        execs += re.findall(r"^ExecStart=(.+)$", text, re.M)
        with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
            f.write(text)
    run = subprocess.run(["systemd-analyze", "verify", *[os.path.join(tmp, n) for n in names]],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stderr.strip() == "", run.stderr
    # Each command line's options are the binary's own (clap refuses an unknown one).
    assert len(execs) == 2
    for line in execs:
        argv = shlex.split(line)
        check = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, (line, check.stderr)
