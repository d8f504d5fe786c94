"""corpus: TUSZ layout walk, strict annotation parsing, split policies. Files are tiny and written under tmp_path."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eegcache.core import corpus
from eegcache.core.corpus import Annotation, RecordingRef
from eegcache.errors import AnnotationError, ConfigError, CorpusError

BNAME = "aaaaaaab_s001_t000"
COLUMNS = "channel,start_time,stop_time,label,confidence"


def annotation_text(rows, bname=BNAME, duration="240.0000", extra_comments=("#",)) -> str:
    head = ["# version = csv_v1.0.0", f"# bname = {bname}", f"# duration = {duration} secs", *extra_comments, COLUMNS]
    return "\n".join(head + list(rows)) + "\n"


def write(path: Path, text: str | bytes = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def write_recording(folder: Path, bname: str, suffixes=(".csv_bi", ".csv")) -> Path:
    edf = write(folder / f"{bname}.edf")
    for suffix in suffixes:
        write(folder / f"{bname}{suffix}", annotation_text(["TERM,0.0000,240.0000,bckg,1.0000"], bname=bname))
    return edf


# --- discovery ---------------------------------------------------------------------------------


@pytest.fixture
def tusz(tmp_path) -> Path:
    """A TUSZ v2.0.3-shaped tree: 3 patients, several sessions and montage folders, mixed annotations."""
    root = tmp_path / "tusz"
    edf = root / "edf"
    write_recording(edf / "train/aaaaaaab/s001_2003/01_tcp_ar", "aaaaaaab_s001_t000")
    write_recording(edf / "train/aaaaaaab/s001_2003/01_tcp_ar", "aaaaaaab_s001_t001", suffixes=(".csv",))
    write_recording(edf / "train/aaaaaaab/s002_2004/02_tcp_le", "aaaaaaab_s002_t000", suffixes=())
    write_recording(edf / "dev/aaaaaaac/s001_2010/03_tcp_ar_a", "aaaaaaac_s001_t000")
    write_recording(edf / "eval/aaaaaaad/s003_2012/01_tcp_ar", "aaaaaaad_s003_t002", suffixes=(".csv_bi",))
    # files discovery must ignore
    write(root / "DOCS" / "README.txt", "readme")
    write(edf / "train/aaaaaaab/s001_2003/01_tcp_ar/aaaaaaab_s001_t000.lbl", "x")
    write(edf / "train/aaaaaaab/s001_2003/01_tcp_ar/._aaaaaaab_s001_t000.edf")
    write(edf / "train/.trash/not_a_name.edf")
    return root


def test_discovery_reads_ids_from_names_and_finds_annotations(tusz):
    refs = corpus.discover(tusz)
    assert [r.relpath for r in refs] == [
        "edf/dev/aaaaaaac/s001_2010/03_tcp_ar_a/aaaaaaac_s001_t000.edf",
        "edf/eval/aaaaaaad/s003_2012/01_tcp_ar/aaaaaaad_s003_t002.edf",
        "edf/train/aaaaaaab/s001_2003/01_tcp_ar/aaaaaaab_s001_t000.edf",
        "edf/train/aaaaaaab/s001_2003/01_tcp_ar/aaaaaaab_s001_t001.edf",
        "edf/train/aaaaaaab/s002_2004/02_tcp_le/aaaaaaab_s002_t000.edf",
    ]
    by_name = {r.bname: r for r in refs}
    ref = by_name["aaaaaaad_s003_t002"]
    assert (ref.patient, ref.session, ref.token, ref.official_split) == ("aaaaaaad", "s003", "t002", "eval")
    assert ref.edf == tusz / ref.relpath
    assert by_name["aaaaaaab_s001_t000"].annotation.name == "aaaaaaab_s001_t000.csv_bi"  # csv_bi preferred
    assert by_name["aaaaaaab_s001_t001"].annotation.name == "aaaaaaab_s001_t001.csv"  # else csv
    assert by_name["aaaaaaab_s002_t000"].annotation is None  # neither: the build decides
    assert [r.official_split for r in refs] == ["dev", "eval", "train", "train", "train"]


@pytest.mark.parametrize("sub", ["", "edf"])
def test_root_may_be_the_tusz_root_or_its_edf_folder(tusz, sub):
    refs = corpus.discover(tusz / sub)
    assert len(refs) == 5
    prefix = "edf/" if not sub else ""
    assert refs[0].relpath == prefix + "dev/aaaaaaac/s001_2010/03_tcp_ar_a/aaaaaaac_s001_t000.edf"


def test_root_may_be_any_folder_above_the_split_folders(tusz):
    refs = corpus.discover(tusz.parent)
    assert {r.bname: r.official_split for r in refs} == {r.bname: r.official_split for r in corpus.discover(tusz)}
    assert refs[0].relpath.startswith("tusz/edf/dev/")


def test_older_layouts_work_and_the_nearest_split_folder_wins(tmp_path):
    write_recording(tmp_path / "v1.5/train/01_tcp_ar/001/aaaaaaab/s001_2003", "aaaaaaab_s001_t000")
    write_recording(tmp_path / "eval/archive/dev/aaaaaaac", "aaaaaaac_s001_t000")
    splits = {r.bname: r.official_split for r in corpus.discover(tmp_path)}
    assert splits == {"aaaaaaab_s001_t000": "train", "aaaaaaac_s001_t000": "dev"}


def test_split_folder_above_the_root_does_not_count(tmp_path):
    edf = write_recording(tmp_path / "train/corpus/aaaaaaab", BNAME)
    with pytest.raises(CorpusError, match="not under a train/dev/eval folder") as err:
        corpus.discover(tmp_path / "train" / "corpus")
    assert err.value.path == str(edf)


@pytest.mark.parametrize(
    "name",
    [
        "AAAAAAAB_s001_t000",
        "aaaaaab_s001_t000",
        "aaaaaaaab_s001_t000",
        "aaaaaaab_s01_t000",
        "aaaaaaab_s001_t000_x",
        "aaaaaaab_s001",
        "aaaaaaa1_s001_t000",
        "aaaaaaab-s001-t000",
    ],
)
def test_badly_named_edf_is_an_error_naming_the_file(tmp_path, name):
    write_recording(tmp_path / "edf/train/aaaaaaab", "aaaaaaab_s001_t000")
    bad = write(tmp_path / "edf/train/aaaaaaab" / f"{name}.edf")
    with pytest.raises(CorpusError, match="does not follow") as err:
        corpus.discover(tmp_path)
    assert err.value.path == str(bad)
    assert name in str(err.value)


def test_edf_outside_a_split_folder_is_an_error(tusz):
    stray = write(tusz / "edf" / "extra" / "aaaaaaaz_s001_t000.edf")
    with pytest.raises(CorpusError, match="not under a train/dev/eval folder") as err:
        corpus.discover(tusz)
    assert err.value.path == str(stray)


def test_duplicate_bname_is_an_error_naming_both_files(tusz):
    write(tusz / "edf/eval/aaaaaaab/s001_2003/01_tcp_ar/aaaaaaab_s001_t000.edf")
    with pytest.raises(CorpusError, match="2 EDFs share the name aaaaaaab_s001_t000 .*none is built") as err:
        corpus.discover(tusz)
    message = str(err.value)
    assert "edf/eval/aaaaaaab/s001_2003/01_tcp_ar/aaaaaaab_s001_t000.edf" in message
    assert "edf/train/aaaaaaab/s001_2003/01_tcp_ar/aaaaaaab_s001_t000.edf" in message


def test_no_edf_is_an_error_naming_the_root(tmp_path):
    write(tmp_path / "edf/train/aaaaaaab/aaaaaaab_s001_t000.csv_bi", "x")
    with pytest.raises(CorpusError, match="no .edf files") as err:
        corpus.discover(tmp_path)
    assert err.value.path == str(tmp_path)
    with pytest.raises(CorpusError, match="not a folder"):
        corpus.discover(tmp_path / "missing")


def test_discovery_of_7000_files_finds_them_all(tmp_path):
    for p in range(70):
        patient = "aaaa" + "".join(chr(ord("a") + int(d)) for d in f"{p:04d}")
        folder = tmp_path / "edf" / "train" / patient / "s001_2010" / "01_tcp_ar"
        folder.mkdir(parents=True)
        for t in range(50):
            (folder / f"{patient}_s001_t{t:03d}.edf").touch()
            (folder / f"{patient}_s001_t{t:03d}.csv_bi").touch()
    refs = corpus.discover(tmp_path)  # its speed at TUSZ scale is bench_scale.py's (no timing asserts in tests)
    assert len(refs) == 3500 and all(r.annotation is not None for r in refs)
    assert len({r.edf for r in refs}) == 3500


# --- annotations: valid files --------------------------------------------------------------------


def test_csv_bi_parses_to_merged_seizure_intervals(tmp_path):
    rows = [
        "TERM,0.0000,36.8100,bckg,1.0000",
        "TERM,36.8100,70.2300,seiz,1.0000",
        "TERM,70.2300,80.0000,seiz,0.5000",  # touches the previous seizure: merged
        "TERM,80.0000,100.0000,bckg,1.0000",
        "TERM,150.0000,160.5000,seiz,1.0000",  # after a gap with no row at all
        "TERM,160.5000,240.0005,bckg,1.0000",  # within the 1 ms end tolerance
    ]
    path = write(tmp_path / f"{BNAME}.csv_bi", annotation_text(rows) + "\n\n  \n")
    ann = corpus.parse_annotation(path)
    assert ann == Annotation(path, 240.0, ((36.81, 80.0), (150.0, 160.5)))


def test_seizure_reaching_past_the_end_within_tolerance_is_clipped(tmp_path):
    path = write(tmp_path / f"{BNAME}.csv_bi", annotation_text(["TERM,200.0000,240.0009,seiz,1.0000"]))
    assert corpus.parse_annotation(path).seizures == ((200.0, 240.0),)


def test_csv_seizures_are_the_union_over_channels(tmp_path):
    rows = [
        "FP1-F7,0.0000,10.0000,bckg,1.0000",
        "FP1-F7,10.0000,30.0000,fnsz,1.0000",
        "FP1-F7,30.0000,240.0000,bckg,1.0000",
        "F7-T3,0.0000,25.0000,bckg,1.0000",
        "F7-T3,25.0000,40.0000,cpsz,1.0000",  # overlaps FP1-F7's seizure: union
        "F7-T3,40.0000,240.0000,bckg,1.0000",
        "T3-T5,100.0000,110.0000,gnsz,1.0000",
        "T3-T5,110.0000,120.0000,tcsz,1.0000",  # same channel, touching, different type: merged
    ]
    text = annotation_text(rows, extra_comments=("# montage_file = $NEDC_NFC/lib/montage.txt", "#"))
    path = write(tmp_path / f"{BNAME}.csv", text)
    assert corpus.parse_annotation(path).seizures == ((10.0, 40.0), (100.0, 120.0))


def test_bom_crlf_and_spaces_are_accepted(tmp_path):
    text = annotation_text(["TERM, 1.0000 ,2.0000,seiz,1.0000"]).replace("\n", "\r\n")
    path = write(tmp_path / f"{BNAME}.csv_bi", b"\xef\xbb\xbf" + text.encode())
    assert corpus.parse_annotation(path) == Annotation(path, 240.0, ((1.0, 2.0),))


def test_background_only_and_zero_length_rows_give_no_seizures(tmp_path):
    rows = ["TERM,0.0000,120.0000,bckg,1.0000", "TERM,120.0000,120.0000,seiz,1.0000", "TERM,120,240,bckg,1"]
    path = write(tmp_path / f"{BNAME}.csv_bi", annotation_text(rows))
    assert corpus.parse_annotation(path).seizures == ()


# --- annotations: malformed files ----------------------------------------------------------------

GOOD = annotation_text(["TERM,0.0000,36.8100,bckg,1.0000", "TERM,36.8100,70.2300,seiz,1.0000"])
GOOD_LINES = GOOD.splitlines()  # 1 version, 2 bname, 3 duration, 4 "#", 5 columns, 6-7 rows


def replaced(line: int, text: str | None) -> str:
    lines = list(GOOD_LINES)
    if text is None:
        del lines[line - 1]
    else:
        lines[line - 1] = text
    return "\n".join(lines) + "\n"


def with_rows(*rows: str) -> str:
    return annotation_text(rows)


MALFORMED_CSV_BI = {
    "empty file": ("", 1, "empty"),
    "only blank lines": ("\n \n\n", 1, "empty"),
    "version line missing": (replaced(1, None), 1, "version"),
    "other version": (replaced(1, "# version = csv_v2.0.0"), 1, "unsupported annotation version 'csv_v2.0.0'"),
    "ends after version": ("# version = csv_v1.0.0\n", 2, "file ends before the '# bname"),
    "bname line missing": (replaced(2, "# duration = 240.0000 secs"), 2, "bname"),
    "bname of another file": (replaced(2, "# bname = aaaaaaab_s001_t001"), 2, "does not match the file name"),
    "duration without unit": (replaced(3, "# duration = 240.0000"), 3, "duration"),
    "duration not a number": (replaced(3, "# duration = long secs"), 3, "duration"),
    "duration nan": (replaced(3, "# duration = nan secs"), 3, "duration"),
    "duration zero": (replaced(3, "# duration = 0.0000 secs"), 3, "positive"),
    "duration negative": (replaced(3, "# duration = -1.0 secs"), 3, "positive"),
    "duration overflows": (replaced(3, "# duration = 1e999 secs"), 3, "positive"),
    "column header missing": (replaced(5, None), 5, "column header"),
    "wrong column header": (replaced(5, "channel,start,stop,label,confidence"), 5, "column header"),
    "blank line before header": (replaced(4, ""), 4, "column header"),
    "ends before column header": ("\n".join(GOOD_LINES[:4]) + "\n", 5, "file ends before the column header"),
    "no rows": ("\n".join(GOOD_LINES[:5]) + "\n\n", 6, "no annotation rows"),
    "four fields": (with_rows("TERM,0.0000,36.8100,bckg"), 6, "expected 5 comma-separated fields, got 4"),
    "six fields": (with_rows("TERM,0,1,bckg,1,x"), 6, "got 6"),
    "channel not TERM": (with_rows("TERM,0,1,bckg,1", "FP1-F7,1,2,seiz,1"), 7, "channel must be TERM"),
    "start not a number": (with_rows("TERM,zero,1,bckg,1"), 6, "start_time is not a finite number"),
    "start empty": (with_rows("TERM,,1,bckg,1"), 6, "start_time is not a finite number"),
    "start inf": (with_rows("TERM,inf,1,bckg,1"), 6, "start_time is not a finite number"),
    "stop nan": (with_rows("TERM,0,nan,bckg,1"), 6, "stop_time is not a finite number"),
    "stop overflows": (with_rows("TERM,0,1e999,bckg,1"), 6, "stop_time is not a finite number"),
    "negative start": (with_rows("TERM,-1.0000,1.0000,bckg,1"), 6, "negative"),
    "stop before start": (with_rows("TERM,0,5,bckg,1", "TERM,10.0000,9.0000,seiz,1"), 7, "before start_time"),
    "past the end": (with_rows("TERM,0.0000,240.0020,bckg,1"), 6, "past the end of the recording"),
    "unknown label": (with_rows("TERM,0,1,fnsz,1"), 6, "label must be seiz or bckg"),
    "label case": (with_rows("TERM,0,1,SEIZ,1"), 6, "label must be seiz or bckg"),
    "confidence above 1": (with_rows("TERM,0,1,seiz,1.5"), 6, "confidence must be in [0, 1]"),
    "confidence negative": (with_rows("TERM,0,1,seiz,-0.1"), 6, "confidence must be in [0, 1]"),
    "confidence word": (with_rows("TERM,0,1,seiz,high"), 6, "confidence is not a finite number"),
    "overlapping rows": (with_rows("TERM,0,40,bckg,1", "TERM,30,70,seiz,1"), 7, "overlaps the row on line 6"),
    "overlap out of order": (with_rows("TERM,30,70,seiz,1", "TERM,80,90,bckg,1", "TERM,0,40,bckg,1"), 8, "line 6"),
    "row inside a row": (with_rows("TERM,0,100,bckg,1", "TERM,10,20,seiz,1"), 7, "overlaps"),
    "blank line between rows": (with_rows("TERM,0,1,bckg,1", "", "TERM,1,2,seiz,1"), 7, "blank line"),
    "comment among rows": (with_rows("TERM,0,1,bckg,1", "# note"), 7, "fields"),
}


@pytest.mark.parametrize(("text", "line", "reason"), MALFORMED_CSV_BI.values(), ids=MALFORMED_CSV_BI.keys())
def test_malformed_csv_bi_is_an_annotation_error_with_its_line(tmp_path, text, line, reason):
    path = write(tmp_path / f"{BNAME}.csv_bi", text)
    with pytest.raises(AnnotationError) as err:
        corpus.parse_annotation(path)
    assert err.value.line == line
    assert f"{path}:{line}: " in str(err.value)
    assert reason in err.value.reason


MALFORMED_CSV = {
    "overlap on one channel": (["FP1-F7,0,40,bckg,1", "F7-T3,0,240,bckg,1", "FP1-F7,39,50,fnsz,1"], 8, "overlaps"),
    "TERM channel": (["TERM,0,240,bckg,1"], 6, "montage pair"),
    "empty label": (["FP1-F7,0,240,,1"], 6, "label must be a lowercase word"),
    "odd label": (["FP1-F7,0,240,fn sz,1"], 6, "label must be a lowercase word"),
    "past the end": (["FP1-F7,0,241,bckg,1"], 6, "past the end of the recording"),
}


@pytest.mark.parametrize(("rows", "line", "reason"), MALFORMED_CSV.values(), ids=MALFORMED_CSV.keys())
def test_malformed_csv_is_an_annotation_error_with_its_line(tmp_path, rows, line, reason):
    path = write(tmp_path / f"{BNAME}.csv", annotation_text(rows))
    with pytest.raises(AnnotationError) as err:
        corpus.parse_annotation(path)
    assert err.value.line == line and f":{line}: " in str(err.value)
    assert reason in err.value.reason


def test_csv_rows_of_different_channels_may_overlap(tmp_path):
    path = write(tmp_path / f"{BNAME}.csv", annotation_text(["FP1-F7,0,240,bckg,1", "F7-T3,0,240,bckg,1"]))
    assert corpus.parse_annotation(path).seizures == ()


def test_invalid_utf8_is_an_annotation_error_on_its_line(tmp_path):
    data = GOOD.replace("TERM,36.8100", "TERM,36.81\xff0").encode("latin-1")
    path = write(tmp_path / f"{BNAME}.csv_bi", data)
    with pytest.raises(AnnotationError, match="not UTF-8") as err:
        corpus.parse_annotation(path)
    assert err.value.line == 7 and f"{path}:7: " in str(err.value)


def test_unknown_suffix_and_missing_file_are_annotation_errors(tmp_path):
    with pytest.raises(AnnotationError, match="unknown annotation suffix '.tse'"):
        corpus.parse_annotation(write(tmp_path / f"{BNAME}.tse", GOOD))
    with pytest.raises(AnnotationError, match="cannot read"):
        corpus.parse_annotation(tmp_path / f"{BNAME}.csv_bi")


# --- annotations: properties -----------------------------------------------------------------------

FIELD = st.sampled_from(
    [
        "TERM",
        "FP1-F7",
        "0",
        "1",
        "0.5",
        "-1",
        "240",
        "240.0009",
        "1e999",
        "nan",
        "seiz",
        "bckg",
        "fnsz",
        "",
        " ",
        "x",
        "1.0000",
        "36.8100",
        "\u00e9",
    ]
)
LINE = st.one_of(st.lists(FIELD, max_size=7).map(",".join), st.sampled_from(["", "#", COLUMNS]), st.text())


@st.composite
def near_valid(draw) -> str:
    """A full header and mostly plausible rows, so that both parses and late-row errors are common."""
    head = "\n".join(GOOD_LINES[:5]).replace("240.0000", draw(st.sampled_from(["240.0000", "100", "0.5", "3e300"])))
    cuts = [f"{c / 100:.4f}" for c in sorted(draw(st.lists(st.integers(0, 24100), min_size=2, max_size=8)))]
    rows = [
        f"{draw(st.sampled_from(['TERM', 'TERM', 'FP1-F7']))},{a},{b},{draw(st.sampled_from(['seiz', 'bckg']))},1"
        for a, b in zip(cuts, cuts[1:])
    ]
    for _ in range(draw(st.integers(0, 2))):  # spoil a few lines: junk, or a repeated (overlapping) row
        rows.insert(draw(st.integers(0, len(rows))), draw(st.one_of(LINE, st.sampled_from(rows))))
    return head + "\n" + "\n".join(draw(st.permutations(rows)))


BROKEN_HEADER = st.builds(
    lambda head, rows: "\n".join([*GOOD_LINES[:head], *rows]), st.integers(0, 4), st.lists(LINE, max_size=6)
)


def assert_valid(ann: Annotation) -> None:
    assert math.isfinite(ann.duration_s) and ann.duration_s > 0
    previous_stop = -math.inf
    for start, stop in ann.seizures:
        assert 0 <= start < stop <= ann.duration_s
        assert start > previous_stop  # sorted, disjoint and not touching (touching ones merge)
        previous_stop = stop


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    content=st.one_of(near_valid(), near_valid(), BROKEN_HEADER, st.text(), st.binary()),
    suffix=st.sampled_from([".csv_bi", ".csv"]),
)
def test_any_content_parses_or_raises_annotation_error(tmp_path_factory, content, suffix):
    path = write(tmp_path_factory.mktemp("prop") / f"{BNAME}{suffix}", content)
    try:
        ann = corpus.parse_annotation(path)
    except AnnotationError as exc:
        assert exc.path == str(path)
    else:
        assert_valid(ann)


def union_by_ticks(intervals, ticks: int):
    """Independent oracle: mark each 0.01 s tick as seizure or not, then read the runs back."""
    marked = [False] * ticks
    for start, stop in intervals:
        for t in range(start, stop):
            marked[t] = True
    runs, t = [], 0
    while t < ticks:
        if marked[t]:
            begin = t
            while t < ticks and marked[t]:
                t += 1
            runs.append((begin / 100, t / 100))
        t += 1
    return tuple(runs)


@st.composite
def channel_rows(draw, ticks: int):
    """Non-overlapping rows (in 0.01 s ticks) of one channel: boundaries, a label per piece, some gaps."""
    cuts = sorted(draw(st.sets(st.integers(0, ticks), min_size=2, max_size=12)))
    pieces = []
    for start, stop in zip(cuts, cuts[1:]):
        kind = draw(st.sampled_from(["seiz", "bckg", "gap"]))
        if kind != "gap":
            pieces.append((start, stop, kind))
    return pieces


@settings(max_examples=200, deadline=None)
@given(data=st.data(), multi=st.booleans())
def test_well_formed_rows_parse_to_their_union(tmp_path_factory, data, multi):
    ticks = 2000
    channels = ["FP1-F7", "F7-T3", "T3-T5"] if multi else ["TERM"]
    rows, seizures = [], []
    for channel in channels:
        for start, stop, kind in data.draw(channel_rows(ticks)):
            label = (
                kind
                if channel == "TERM"
                else {"seiz": data.draw(st.sampled_from(["fnsz", "gnsz"])), "bckg": "bckg"}[kind]
            )
            rows.append(f"{channel},{start / 100:.4f},{stop / 100:.4f},{label},1.0000")
            if kind == "seiz":
                seizures.append((start, stop))
    if not rows:
        rows.append(f"{channels[0]},0.0000,{ticks / 100:.4f},bckg,1.0000")
    random.Random(data.draw(st.integers(0, 1000))).shuffle(rows)  # row order is irrelevant
    suffix = ".csv" if multi else ".csv_bi"
    path = write(tmp_path_factory.mktemp("rows") / f"{BNAME}{suffix}", annotation_text(rows, duration="20.0000"))
    ann = corpus.parse_annotation(path)
    assert ann.duration_s == 20.0
    assert ann.seizures == union_by_ticks(seizures, ticks)


# --- splits ----------------------------------------------------------------------------------------


def ref(patient: str, split: str, session: int = 1, token: int = 0) -> RecordingRef:
    bname = f"{patient}_s{session:03d}_t{token:03d}"
    relpath = f"edf/{split}/{patient}/s{session:03d}_2010/01_tcp_ar/{bname}.edf"
    return RecordingRef(Path(relpath), None, relpath, bname, patient, f"s{session:03d}", f"t{token:03d}", split)


def patient_name(i: int) -> str:
    return "pa" + "".join(chr(ord("a") + (i // 26**k) % 26) for k in range(6))


def official(n_train: int, n_dev: int = 3, n_eval: int = 3) -> list[RecordingRef]:
    refs = []
    for i in range(n_train + n_dev + n_eval):
        split = "train" if i < n_train else "dev" if i < n_train + n_dev else "eval"
        refs += [ref(patient_name(i), split, 1, 0), ref(patient_name(i), split, 2, 1)]
    return refs


def test_official_tusz_keeps_folder_splits_sorted_by_relpath():
    refs = official(5)
    assigned, excluded = corpus.assign_splits(list(reversed(refs)), "official_tusz", 0.2, 0)
    assert excluded == []
    assert [r.relpath for r, _ in assigned] == sorted(r.relpath for r in refs)
    assert all(split == r.official_split for r, split in assigned)


def test_official_tusz_stops_on_a_patient_in_two_folders():
    refs = official(3) + [ref(patient_name(0), "eval", 9, 0)]
    with pytest.raises(CorpusError) as err:
        corpus.assign_splits(refs, "official_tusz", 0.2, 0)
    message = str(err.value)
    assert f"patient {patient_name(0)} appears in train and eval" in message
    assert f"{patient_name(0)}_s001_t000.edf" in message and f"{patient_name(0)}_s009_t000.edf" in message


def test_patient_disjoint_draws_dev_from_train_keeps_eval_and_excludes_official_dev():
    refs = official(40, n_dev=2, n_eval=2)
    assigned, excluded = corpus.assign_splits(refs, "patient_disjoint", 0.3, 1)
    assert [r.official_split for r, _ in excluded] == ["dev"] * 4
    assert {reason for _, reason in excluded} == {
        "official dev split is not used under patient_disjoint (dev is drawn from official train)"
    }
    assert all(split == "eval" for r, split in assigned if r.official_split == "eval")
    from_train = {r.patient: split for r, split in assigned if r.official_split == "train"}
    assert set(from_train.values()) == {"train", "dev"}
    for r, split in assigned:  # every recording of a patient goes the same way
        if r.official_split == "train":
            assert split == from_train[r.patient]
    assert [r.relpath for r, _ in assigned] == sorted(r.relpath for r, _ in assigned)
    assert [r.relpath for r, _ in excluded] == sorted(r.relpath for r, _ in excluded)


def test_patient_disjoint_is_deterministic_and_seeded():
    refs = official(200)
    first = corpus.assign_splits(refs, "patient_disjoint", 0.2, 42)
    assert corpus.assign_splits(list(reversed(refs)), "patient_disjoint", 0.2, 42) == first
    assert corpus.assign_splits(refs, "patient_disjoint", 0.2, 43)[0] != first[0]


def test_adding_a_patient_does_not_move_the_others():
    refs = official(100)
    before = {r.relpath: s for r, s in corpus.assign_splits(refs, "patient_disjoint", 0.2, 7)[0]}
    more = refs + [ref("zzzzzzzz", "train"), ref("zzzzzzzy", "train", 3, 2)]
    after = {r.relpath: s for r, s in corpus.assign_splits(more, "patient_disjoint", 0.2, 7)[0]}
    assert {k: after[k] for k in before} == before


@pytest.mark.parametrize("ratio", [0.1, 0.2, 0.5])
def test_dev_ratio_is_roughly_met_over_many_patients(ratio):
    assigned, _ = corpus.assign_splits(official(200, 0, 0), "patient_disjoint", ratio, 3)
    dev_patients = {r.patient for r, s in assigned if s == "dev"}
    assert abs(len(dev_patients) / 200 - ratio) < 0.08


def test_patient_disjoint_stops_on_a_train_patient_also_in_eval():
    refs = official(3) + [ref(patient_name(1), "eval", 5, 0)]
    with pytest.raises(CorpusError, match=f"patient {patient_name(1)} appears in (train|dev) and eval"):
        corpus.assign_splits(refs, "patient_disjoint", 0.5, 0)


def test_patient_in_official_train_and_dev_is_fine_under_patient_disjoint():
    # the official dev recordings are excluded, so nothing leaks
    refs = official(3) + [ref(patient_name(0), "dev", 5, 0)]
    assigned, excluded = corpus.assign_splits(refs, "patient_disjoint", 0.5, 0)
    assert len(assigned) == len(refs) - 7 and len(excluded) == 7


@pytest.mark.parametrize(
    ("policy", "ratio"),
    [
        ("random", 0.2),
        ("", 0.2),
        ("patient_disjoint", 0.0),
        ("patient_disjoint", 1.0),
        ("official_tusz", -0.1),
        ("official_tusz", 1.5),
        ("patient_disjoint", math.nan),
    ],
)
def test_bad_policy_or_ratio_is_a_config_error(policy, ratio):
    with pytest.raises(ConfigError):
        corpus.assign_splits(official(2), policy, ratio, 0)


def test_patient_leak_message_lists_some_files_of_each_split():
    assigned = [(ref("aaaaaaab", "train", 1, t), "train") for t in range(5)] + [(ref("aaaaaaab", "eval", 2, 0), "eval")]
    assigned += [(ref("aaaaaaac", "train"), "train")]
    with pytest.raises(CorpusError) as err:
        corpus.check_patient_disjoint(assigned)
    message = str(err.value)
    assert "patient aaaaaaab appears in train and eval" in message
    assert "aaaaaaab_s001_t000.edf" in message and "and 2 more" in message
    assert "edf/eval/aaaaaaab/s002_2010/01_tcp_ar/aaaaaaab_s002_t000.edf" in message
    assert "aaaaaaac" not in message
    corpus.check_patient_disjoint(assigned[:5] + assigned[6:])  # no leak: no error
