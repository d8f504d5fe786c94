"""Inputs eegcache must not trust, tried on the real S3 server, DVC and git: hostile names in metadata, listings,
configuration and the command line; a disk that takes only part of a write; a remote listing swapped for another
version's; metadata edited in place on the volume; read-only volumes. Nothing outside eegcache's own directories
changes, no wrong version is accepted, and each failure is one clear error."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from eegcache.core import store
from eegcache.versions import dvc, objects, verify
from eegcache.volume import layout, prune, resolve
from tests.integration.projects import BIN, connect, files, make_project, read_only, record, settings, sh

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def project(tmp_path_factory, demo_corpus, s3_server) -> Path:
    return make_project(tmp_path_factory.mktemp("trust_repo"), demo_corpus, s3_server, push=True)


def put(server, url: str, key: str, data: bytes, where: Path) -> None:
    """An object written straight into the bucket, behind DVC's back (as an attacker with write access would)."""
    source = where / "upload.bin"
    source.write_bytes(data)
    sh(
        str(BIN / "s5cmd"),
        "--endpoint-url",
        server.endpoint_url,
        "cp",
        str(source),
        f"{url}/{key}",
        cwd=where,
        env=server.env(),
    )


def snapshot(root: Path) -> dict[str, bytes]:
    return files(root) if root.exists() else {}


def test_hostile_object_ids_in_metadata_delete_nothing_outside(project, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file\n")
    vol = tmp_path / "vol"
    path = Path(resolve.resolve(settings(project, vol, "cache=volume_first"), project).path)
    meta = path / store.METADATA_NAME
    data = json.loads(meta.read_text())
    rel = sorted(data["files"])[0]
    cache_dir = layout.versions_root(vol) / layout.DVC_CACHE
    data["files"][rel]["md5"] = str(Path("..") / ".." / ".." / ".." / ".." / ".." / victim.relative_to(tmp_path))
    meta.chmod(0o644)
    meta.unlink()
    meta.write_text(json.dumps(data))
    (path / rel).chmod(0o644)
    with open(path / rel, "ab") as handle:  # and damage that file, so eviction looks the id up
        handle.write(b"x")
    with pytest.raises(resolve.ResolveError):
        resolve.resolve(settings(project, vol, "cache=offline"), project)
    assert victim.read_text() == "the user's file\n" and cache_dir.is_dir()
    (moved,) = (layout.versions_root(vol) / layout.QUARANTINE).glob(f"{path.name}.*[0-9]")
    fresh = Path(resolve.resolve(settings(project, vol, "cache=volume_first"), project).path)  # recovered
    assert files(fresh) == files(project / "cache" / "tusz")
    # prune reads every installed version's metadata: plant the hostile id in an installed look-alike too
    meta = fresh / store.METADATA_NAME
    data = json.loads(meta.read_text())
    data["files"][rel]["md5"] = "../../../../../../" + victim.name
    meta.chmod(0o644)
    meta.unlink()
    meta.write_text(json.dumps(data))
    result = prune.prune(vol, keep=0, in_use=set())
    assert result.removed == (fresh.name,) and victim.read_text() == "the user's file\n"
    record("trust", "object id '../..' in metadata: quarantine and prune", True, victim.is_file())


@pytest.mark.parametrize(
    "version", ["../../../victim_rel_0123456789a.dir", "/tmp/" + "a" * 27 + ".dir", "A" * 32 + ".dir"]
)
def test_a_hostile_cache_version_is_a_config_error(project, tmp_path, version):
    outside = tmp_path / "victim_rel_0123456789a"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep\n")
    proc = sh(
        "eegcache",
        "resolve",
        f"cache.volume_root={tmp_path / 'a' / 'b' / 'c'}",
        f"cache.version={version}",
        cwd=project,
        check=False,
    )
    assert proc.returncode == 2 and "cache.version" in proc.stderr and "not a DVC object id" in proc.stderr
    assert (outside / "keep.txt").read_text() == "keep\n" and not (tmp_path / "a").exists()
    pulled = sh("eegcache", "pull-version", str(tmp_path / "t"), "--hash", version, cwd=project, check=False)
    assert pulled.returncode == 2 and "--hash" in pulled.stderr and not (tmp_path / "t").exists()


def test_a_listing_with_a_path_out_of_the_target_is_refused(project, tmp_path, s3_server):
    content = b"written by an attacker\n"
    oid = hashlib.md5(content).hexdigest()
    listing = json.dumps([{"md5": oid, "relpath": "../../../escaped.txt"}]).encode()
    version = hashlib.md5(listing).hexdigest() + ".dir"
    url = dvc.remote_settings(project)["url"]
    put(s3_server, url, objects.object_key(oid), content, tmp_path)
    put(s3_server, url, objects.object_key(version), listing, tmp_path)
    target = tmp_path / "a" / "b" / "target"
    proc = sh("eegcache", "pull-version", str(target), "--hash", version, cwd=project, check=False)
    assert proc.returncode == 2 and "not a safe relative path" in proc.stderr, proc.stderr
    assert not list(tmp_path.rglob("escaped.txt"))
    record("trust", "'..' relpath in a remote .dir listing", True, True)


@pytest.mark.parametrize(
    "command",
    [["remote-verify", "--rev=--output={out}"], ["pull-version", "{tmp}/t", "--rev=--output={out}"], ["versions"]],
)
def test_revisions_are_never_git_options(project, tmp_path, command):
    out = tmp_path / "written-by-git"
    args = [part.format(out=out, tmp=tmp_path) for part in command]
    proc = sh("eegcache", *args, cwd=project, check=False)
    assert not out.exists()
    if command != ["versions"]:
        assert proc.returncode == 2 and "not a git revision" in proc.stderr
    resolve_rev = sh(
        "eegcache", "resolve", f"cache.volume_root={tmp_path}/v", f"cache.rev=--output={out}", cwd=project, check=False
    )
    assert resolve_rev.returncode == 2 and not out.exists()


def test_a_file_size_limit_never_leaves_a_short_object_and_a_rerun_repairs(project, tmp_path):
    target = tmp_path / "volume"
    limit = 200_000  # bytes: smaller than the demo's recordings
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from eegcache.cli import main\n"
        f"sys.exit(main(['pull-version', {str(target)!r}, '--repo', {str(project)!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "File too large" in proc.stderr and "run again" in proc.stderr, proc.stderr
    objects = [p for p in (target / ".dvc" / "cache" / "files" / "md5").rglob("*") if p.is_file()]
    assert all(store.md5_file(p) == (p.parent.name + p.name).removesuffix(".dir") for p in objects)
    assert not (target / dvc.version_at(project).dirname).exists()
    again = sh("eegcache", "pull-version", str(target), cwd=project)
    assert files(Path(again.stdout.split(" is at ")[1].strip())) == files(project / "cache" / "tusz")
    record("trust", "file-size limit during a fetch", True, True)


def test_deep_remote_verify_hashes_the_listing_and_push_repairs_it(project, tmp_path, s3_server):
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(project), str(clone), cwd=tmp_path)
    sh("cp", "-r", str(project / "data"), str(clone / "data"), cwd=tmp_path)
    connect(clone, s3_server, dvc.remote_settings(project)["url"].split("/", 3)[3])
    sh("eegcache", "params", "preprocess.clip=5.0", cwd=clone)
    sh("dvc", "repro", "build_cache", cwd=clone)
    dvc.push(clone)
    v1, v2 = dvc.version_at(project), dvc.version_at(clone)
    url = dvc.remote_settings(project)["url"]
    other = objects.cache_path(clone / ".dvc" / "cache", v2.hash).read_bytes()
    put(s3_server, url, objects.object_key(v1.hash), other, tmp_path)  # v1's name, v2's complete listing
    for deep in (False, True):
        verdict = verify.verify_remote(project, deep=deep)
        assert not verdict.ok and "corrupt or replaced" in verdict.problems[0], verdict.problems
    with pytest.raises(resolve.ResolveError):
        resolve.resolve(settings(project, tmp_path / "vol", "cache=volume_first", "cache.sources=[remote]"), project)
    assert dvc.push(project) == 1 and verify.verify_remote(project, deep=True).ok
    record("trust", "remote .dir replaced by another version's listing", True, True)


def test_metadata_edited_in_place_is_evicted_and_recovered_in_one_resolve(project, tmp_path):
    vol = tmp_path / "vol"
    path = Path(resolve.resolve(settings(project, vol, "cache=volume_first"), project).path)
    meta = path / store.METADATA_NAME
    meta.chmod(0o644)  # in place: the hard-linked object in the volume's DVC cache changes too
    with open(meta, "r+b") as handle:
        handle.seek(10)
        handle.write(b"X")
    again = resolve.resolve(settings(project, vol, "cache=volume_first"), project)
    assert [(a.source, a.outcome) for a in again.attempts] == [("volume", "rejected"), ("remote", "used")]
    assert files(Path(again.path)) == files(project / "cache" / "tusz")
    third = resolve.resolve(settings(project, vol, "cache=volume_first"), project)
    assert (
        third.source == "volume" and len(list((layout.versions_root(vol) / layout.QUARANTINE).glob("*.why.txt"))) == 1
    )
    record("trust", "metadata edited in place (hard-linked object)", True, True)


def test_read_only_volumes_serve_or_explain(project, tmp_path):
    vol = tmp_path / "vol"
    first = resolve.resolve(settings(project, vol, "cache=volume_first"), project)
    with read_only(vol):
        served = sh("eegcache", "resolve", f"cache.volume_root={vol}", "cache=offline", cwd=project)
        assert served.stdout.strip() == first.path and "prune will not rank it" in served.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    with read_only(empty):
        proc = sh("eegcache", "resolve", f"cache.volume_root={empty}", "cache=volume_first", cwd=project, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "cannot write to the volume" in proc.stderr and "Read-only file system" in proc.stderr
    record("trust", "read-only volume", True, True)


def test_verbose_runs_print_no_credential(project, tmp_path, s3_server):
    vol = tmp_path / "vol"
    runs = [
        sh("eegcache", "-v", "push", "--deep", cwd=project),
        sh("eegcache", "-v", "resolve", f"cache.volume_root={vol}", "cache=volume_first", cwd=project),
        sh("eegcache", "-v", "remote-verify", "--deep", cwd=project),
        sh("eegcache", "-v", "pull-version", str(tmp_path / "pulled"), cwd=project),
    ]
    out = "".join(proc.stdout + proc.stderr for proc in runs)
    assert "DEBUG" in out or "INFO" in out  # -v was heard
    assert s3_server.access_key not in out and s3_server.secret_key not in out
    record("trust", "credentials in -v output", True, True)


def test_links_planted_in_a_volume_lead_nowhere(project, tmp_path):
    """Symlinks an attacker with write access to the volume plants at the names the resolver will use."""
    vol = tmp_path / "vol"
    first = Path(resolve.resolve(settings(project, vol, "cache=volume_first"), project).path)
    versions, name = first.parent, first.name
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "thesis.txt").write_text("years of work\n")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    sh("rm", "-rf", str(first), cwd=tmp_path)
    host = socket.gethostname()  # the partial's name: .partial-<hash>.<host>.<pid>; bash's $$ is the pid exec keeps
    plant = (
        f"ln -s {outside} {versions}/.partial-{name}.{host}.$$ && "
        f"ln -s {victim} {versions}/.partial-{name}.{host}.$$.dvc && "
        f"exec eegcache resolve cache=volume_first cache.volume_root={vol}"
    )
    proc = sh("bash", "-c", plant, cwd=project, check=False)
    assert (outside / "thesis.txt").read_text() == "years of work\n" and victim.read_text() == "precious\n"
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    for link in versions.glob(".partial-*"):
        link.unlink()
    # a symlinked prefix folder in the volume's DVC cache, a symlinked quarantine and a planted note
    cache = versions / ".dvc" / "cache" / "files" / "md5"
    sh("rm", "-rf", str(cache), cwd=tmp_path)
    cache.mkdir(parents=True)
    for prefix in range(256):
        (cache / f"{prefix:02x}").symlink_to(outside)
    proc = sh("eegcache", "resolve", "cache=volume_first", f"cache.volume_root={vol}", cwd=project, check=False)
    assert (
        proc.returncode == 2
        and "leads outside" in proc.stderr
        and sorted(p.name for p in outside.iterdir()) == ["thesis.txt"]
    )
    record("trust", "symlinks planted in the volume (partial, pointer, DVC cache)", True, True)


def test_a_damaged_object_in_the_volumes_cache_is_fetched_again_under_deep(project, tmp_path):
    vol = tmp_path / "vol"
    first = Path(resolve.resolve(settings(project, vol, "cache=volume_first"), project).path)
    victim = sorted(first.rglob("*.npz"))[0]
    victim.chmod(0o644)
    with open(victim, "r+b") as handle:  # same size: the hard-linked object in the volume's DVC cache changes too
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    sh("rm", "-rf", str(first), cwd=tmp_path)
    again = resolve.resolve(settings(project, vol, "cache=s3_first", "cache.validation=deep"), project)
    assert again.source == "remote" and files(Path(again.path)) == files(project / "cache" / "tusz")
    record("trust", "same-size damage in the volume's DVC cache, deep", True, True)


def test_careless_targets_and_read_only_places_are_one_clear_error(project, tmp_path):
    config_before = (project / ".dvc" / "config").read_bytes()
    proc = sh("eegcache", "pull-version", ".", cwd=project, check=False)
    assert (
        proc.returncode == 2
        and "not a volume" in proc.stderr
        and (project / ".dvc" / "config").read_bytes() == config_before
    )
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only(ro):
        for args in (
            ["pull-version", str(ro)],
            ["prune", "--keep", "0", f"cache.volume_root={ro}"],
            ["s3-local", "start", "--dir", str(ro / "s3")],
            ["resolve", f"cache.volume_root={ro}", "--json", str(ro / "r.json")],
        ):
            proc = sh("eegcache", *args, cwd=project, check=False)
            assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr, (args, proc.stderr)  # 0: nothing to do
    mount = tmp_path / "mnt"
    listing = objects.object_key(dvc.version_at(project).hash)
    (mount / listing).parent.mkdir(parents=True)
    (mount / listing).symlink_to("/dev/zero")  # a source that never ends
    proc = sh(
        "eegcache",
        "resolve",
        "cache=s3_first",
        "cache.sources=[mount]",
        f"cache.mount_point={mount}",
        f"cache.volume_root={tmp_path / 'v'}",
        cwd=project,
        check=False,
    )
    assert proc.returncode == 2 and "bytes: refused" in proc.stderr
    record("trust", "careless targets, read-only places, an endless source", True, True)


def test_a_state_dir_of_another_user_is_refused(tmp_path):
    state = tmp_path / "s3"
    state.mkdir()
    (state / "reuse.json").write_text('{"access_key": "ATTACKERKEY", "secret_key": "attackersecret0123456789"}')
    sh("chown", "-R", "nobody", str(state), cwd=tmp_path)
    proc = sh("eegcache", "s3-local", "start", "--dir", str(state), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "belongs to another user" in proc.stderr and not (state / "server.json").exists()
    record("trust", "S3 state dir owned by another user", True, True)
