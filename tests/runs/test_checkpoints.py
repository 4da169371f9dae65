"""Shared checkpoint helpers: file hashing for resume keys, resume-file names, cleanup."""

from semcollab.runs.checkpoints import named_file_hashes, other_resume_files, remove_resume_file, resume_file


def test_named_files_and_folders_are_hashed_by_content(tmp_path):
    (tmp_path / "table").mkdir()
    (tmp_path / "table" / "item_table.npy").write_bytes(b"a")
    (tmp_path / "one.npy").write_bytes(b"b")
    params = {"item_table": str(tmp_path / "table"), "nested": [str(tmp_path / "one.npy"), "not a path"], "k": 3}
    first = named_file_hashes(params)
    assert sorted(first) == [str(tmp_path / "one.npy"), str(tmp_path / "table" / "item_table.npy")]
    (tmp_path / "table" / "item_table.npy").write_bytes(b"changed")
    assert named_file_hashes(params) != first


def test_a_named_folder_holding_the_output_dir_ignores_its_resume_files(tmp_path):
    """model_params naming "." while output_dir is under it: each save must not change the key it is kept under."""
    (tmp_path / "t.npy").write_bytes(b"a")
    before = named_file_hashes({"x": str(tmp_path)})
    (tmp_path / "runs" / ".resume").mkdir(parents=True)
    (tmp_path / "runs" / ".resume" / "sasrec-toy-0123.pt").write_bytes(b"checkpoint")
    assert named_file_hashes({"x": str(tmp_path)}) == before


def test_resume_file_names_and_cleanup(tmp_path):
    a = resume_file(tmp_path, "sasrec", "s3rec:Yelp", {"train": {"lr": 1e-3}})
    b = resume_file(tmp_path, "sasrec", "s3rec:Yelp", {"train": {"lr": 1e-2}})
    assert a.parent == tmp_path / ".resume" and a.name.startswith("sasrec-s3rec-Yelp-") and a != b
    assert a == resume_file(tmp_path, "sasrec", "s3rec:Yelp", {"train": {"lr": 1e-3}})  # same call, same file
    a.parent.mkdir()
    a.write_bytes(b"x")
    b.write_bytes(b"y")
    (a.parent / f".{a.name}.77.tmp").write_bytes(b"half")
    assert other_resume_files(a) == [b]
    remove_resume_file(a)
    assert sorted(p.name for p in a.parent.iterdir()) == [b.name]  # b is another setting's: kept, folder kept
    remove_resume_file(b)
    assert not a.parent.exists()
