"""Models as data and configuration file formats (round trips, provenance, clear errors)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from glassgen.errors import InputError
from glassgen.provenance import provenance
from glassgen.systems.configuration import Configuration, minimum_image, random_configuration
from glassgen.systems.io import (
    read_configuration,
    read_hdf5,
    read_lammps_data,
    read_xyz,
    write_configuration,
    write_hdf5,
    write_xyz,
)
from glassgen.systems.model import available_models, load_model


def test_models_as_data():
    assert {"ka3d", "ka3d_sf", "ka2d", "ka2"} <= set(available_models())
    ka = load_model("ka3d")
    assert ka.sigma[0, 1] == 0.8 and ka.epsilon[0, 1] == 1.5 and ka.cutoff_scheme == "cut_shift"
    assert np.allclose(ka.rcut, 2.5 * ka.sigma)
    ka2d = load_model("ka2d")
    assert ka2d.dim == 2 and ka2d.nsp == 3
    assert list(ka2d.counts(1290)) == [600, 330, 360] and list(ka2d.counts(43)) == [20, 11, 12]
    assert list(ka.counts(4096)) == [3277, 819]
    with pytest.raises(InputError, match="unknown model"):
        load_model("nope")
    with pytest.raises(InputError, match="model file not found: nope.toml"):
        load_model("nope.toml")


def test_model_validation(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('name="x"\ndim=3\nspecies=["A","B"]\ncomposition=[0.5,0.5]\ndensity=1.0\n'
                 'cutoff_scheme="cut"\nsigma=[[1,0.8],[0.9,1]]\nepsilon=[[1,1],[1,1]]\n')
    with pytest.raises(InputError, match="symmetric"):
        load_model(p)
    p.write_text('name="x"\ndim=3\nspecies=["A"]\ncomposition=[1.0]\ndensity=1.0\ncutoff_scheme="spline"\n'
                 'sigma=[[1]]\nepsilon=[[1]]\n')
    with pytest.raises(InputError, match="cutoff_scheme"):
        load_model(p)


@pytest.mark.parametrize("suffix", [".xyz", ".data", ".h5"])
@pytest.mark.parametrize("model", ["ka3d", "ka2d"])
def test_round_trip(tmp_path, suffix, model):
    conf = random_configuration(model, 50, seed=1)
    conf = conf.replace(velocities=np.random.default_rng(0).normal(size=conf.positions.shape))
    path = tmp_path / f"c{suffix}"
    write_configuration(path, conf, seed=9, T=0.5)
    back = read_configuration(path, model)
    assert back.n == conf.n and back.dim == conf.dim
    assert np.array_equal(back.species, conf.species)
    assert np.allclose(back.box, conf.box)
    d = minimum_image(back.positions - conf.positions, conf.box)
    assert np.abs(d).max() < 1e-9
    if suffix != ".xyz":
        assert np.allclose(back.velocities, conf.velocities)
    named = read_configuration(path)  # every format glassgen writes carries the model: read back without it
    assert named.model is not None and named.model.name == model
    assert np.array_equal(named.species, conf.species)
    # and its provenance: T and seed read back from every format (a LAMMPS data file kept none before 2026-12-06)
    assert float(named.metadata["T"]) == 0.5 and int(named.metadata["seed"]) == 9  # (xyz keeps text)
    assert float(back.metadata["T"]) == 0.5


def test_xyz_provenance_reads_back_verbatim(tmp_path):
    """Values with spaces (the command line) and nested records survive the one-token-per-value header."""
    conf = random_configuration("ka2d", 10, seed=1)
    p = tmp_path / "c.xyz"
    write_xyz(p, conf, seed=9, note='a "quoted"  two-space note', flow={"T": [0.4, 0.5], "name": "x y"})
    back = read_xyz(p)
    assert back.metadata["note"] == 'a "quoted"  two-space note'
    assert back.metadata["flow"] == {"T": [0.4, 0.5], "name": "x y"}
    assert back.metadata["command"] == provenance()["command"] and back.metadata["seed"] == "9"
    assert back.model is not None and back.model.name == "ka2d"


def test_hdf5_provenance_and_model(tmp_path):
    conf = random_configuration("ka2", 30, seed=2)
    p = tmp_path / "c.h5"
    write_hdf5(p, conf, seed=4, T=0.7)
    with h5py.File(p) as f:
        assert f.attrs["seed"] == 4 and f.attrs["T"] == 0.7 and f.attrs["model"] == "ka2"
        assert "command" in f.attrs and "glassgen_version" in f.attrs
    back = read_hdf5(p)  # the model travels inside the file
    assert back.model is not None and back.model.name == "ka2"
    assert np.allclose(back.model.epsilon, conf.model.epsilon)


def test_reads_shared_files(data):
    c = read_xyz(data / "configurations" / "ka3d_N150_rho1.2.xyz", "ka3d")
    assert c.n == 150 and np.allclose(c.box, 5.0) and (c.species == 1).sum() == 30
    c2 = read_xyz(data / "configurations" / "ka2d_N1290_T0.231.xyz", "ka2d")
    assert c2.dim == 2 and list(np.bincount(c2.species)) == [600, 330, 360]


def test_lammps_data_unwrapped_images(tmp_path):
    conf = random_configuration("ka3d", 20, seed=3)
    shifted = conf.replace(positions=conf.positions + np.array([2, -1, 0]) * conf.box)
    p = tmp_path / "c.data"
    write_configuration(p, shifted)
    back = read_lammps_data(p, "ka3d")
    assert np.abs(minimum_image(back.positions - conf.positions, conf.box)).max() < 1e-9


def test_configuration_validation():
    ka = load_model("ka3d")
    with pytest.raises(InputError, match="shape"):
        Configuration(np.zeros((5, 4)), np.zeros(5, int), np.ones(4), None)
    with pytest.raises(InputError, match="3D"):
        Configuration(np.zeros((5, 2)), np.zeros(5, int), np.ones(2), ka)
    with pytest.raises(InputError, match="NaN"):
        Configuration(np.full((5, 3), np.nan), np.zeros(5, int), np.ones(3), ka)
    with pytest.raises(InputError, match="out of range"):
        Configuration(np.zeros((5, 3)), np.full(5, 3), np.ones(3), ka)
    with pytest.raises(InputError, match="box"):
        Configuration(np.zeros((5, 3)), np.zeros(5, int), -np.ones(3), ka)


def test_file_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_configuration(tmp_path / "none.xyz")
    (tmp_path / "a.pdb").write_text("x")
    with pytest.raises(InputError, match="unknown configuration format"):
        read_configuration(tmp_path / "a.pdb")
    (tmp_path / "b.xyz").write_text("3\nno cell here\n1 0 0 0\n1 1 1 1\n1 2 2 2\n")
    with pytest.raises(InputError, match="cell"):
        read_xyz(tmp_path / "b.xyz")
    (tmp_path / "c.h5").write_text("not hdf5")
    with pytest.raises(InputError):
        read_hdf5(tmp_path / "c.h5")


_DATA_HEAD = "LAMMPS data\n\n2 atoms\n1 atom types\n"
_BOX = "0 5 xlo xhi\n0 5 ylo yhi\n0 5 zlo zhi\n"


@pytest.mark.parametrize("name,text,msg", [
    ("neg.xyz", "-5\ncell:5,5,5\n" + "1 0 0 0\n" * 3, "must be >= 1"),
    ("extra.xyz", "2\ncell:5,5,5\n1 0 0 0\n1 1.2 0 0\n1 2.4 0 0\n", "more particle lines"),
    ("nobox.data", _DATA_HEAD + "\nAtoms # atomic\n\n1 1 0 0 0\n2 1 1.2 0 0\n", "no box line"),
    ("charge.data", _DATA_HEAD + _BOX + "\nAtoms # charge\n\n1 1 0.0 0 0 0\n2 1 0.0 1.2 0 0\n", "atom style"),
    ("dupid.data", _DATA_HEAD + _BOX + "\nAtoms # atomic\n\n1 1 0 0 0\n1 1 1.2 0 0\n", "not unique"),
    ("realtype.data", _DATA_HEAD + _BOX + "\nAtoms # atomic\n\n1 1.7 0 0 0\n2 1 1.2 0 0\n", "integers"),
])
def test_malformed_configuration_files_are_one_line_errors(tmp_path, name, text, msg):
    """Files that used to be read wrongly without a word: a negative or too small particle count, a missing
    box (it defaulted to 1 x 1 x 1), another atom style (its charge column read as x), duplicate ids, real types."""
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(InputError, match=msg):
        read_configuration(p, "ka3d")


def test_multi_frame_xyz_reads_its_first_frame_and_folders_are_refused(tmp_path):
    conf = random_configuration("ka3d", 10, seed=1)
    write_xyz(tmp_path / "a.xyz", conf)
    one = (tmp_path / "a.xyz").read_text()
    (tmp_path / "two.xyz").write_text(one + one)
    np.testing.assert_allclose(read_xyz(tmp_path / "two.xyz").positions, conf.positions, atol=1e-11)
    (tmp_path / "folder.xyz").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        read_configuration(tmp_path / "folder.xyz")
    from glassgen.provenance import atomic_path

    with pytest.raises(InputError, match="is a folder"):
        with atomic_path(tmp_path / "folder.xyz"):
            pass
    # a column beyond species + coordinates is ignored, with a warning (a file that meant more is not misread
    # silently)
    lines = one.splitlines()
    lines[2] += " 0.5"
    (tmp_path / "extra.xyz").write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="1 column"):
        np.testing.assert_allclose(read_xyz(tmp_path / "extra.xyz").positions, conf.positions, atol=1e-11)


@pytest.mark.parametrize("entries,msg", [
    ({"initial_positions": np.full((10, 3), np.nan)}, "NaN"),
    ({"types": np.array(["A"] * 10)}, "integer labels"),
    ({"box": np.array([-1.0, -1.0, -1.0])}, "positive lengths"),
    ({"box": np.array([3.0, 3.0])}, "positive lengths"),
    ({"md_prop": np.array([None] * 10, dtype=object)}, "unreadable entry"),
])
def test_glassbench_reader_validates_its_arrays(tmp_path, entries, msg):
    from glassgen.systems.glassbench import read_sample

    doc = {"types": np.array([1] * 8 + [2] * 2), "initial_positions": np.random.default_rng(0).random((10, 3)) * 2}
    doc.update(entries)
    np.savez(tmp_path / "bad_T0.44_1.npz", **doc)
    with pytest.raises(InputError, match=msg):
        read_sample(tmp_path / "bad_T0.44_1.npz", T=0.44, system="KA")


def test_lammps_data_round_trip_keeps_unwrapped_positions(tmp_path):
    """Image flags are written, so unwrapped positions (a particle several boxes away) read back as they were."""
    conf = random_configuration("ka3d", 30, seed=4)
    shifted = conf.positions + np.random.default_rng(1).integers(-3, 4, conf.positions.shape) * conf.box
    write_configuration(tmp_path / "u.data", conf.replace(positions=shifted))
    back = read_configuration(tmp_path / "u.data")
    np.testing.assert_allclose(back.positions, shifted, atol=1e-9)
    assert back.model is not None and back.model.name == "ka3d"


def test_written_by_names_the_glassgen_command_only():
    from glassgen.systems.io import written_by

    assert written_by("/x/.venv/bin/glassgen md run --out a.h5") == "glassgen md run"
    assert written_by("glassgen analyze run.h5 --q 7") == "glassgen analyze"
    assert written_by("python -m glassgen.cli pgmc train -o p.json") == "glassgen pgmc train"
    assert written_by("python script.py") == "" and written_by(b"glassgen sample --T 0.4") == "glassgen sample"
