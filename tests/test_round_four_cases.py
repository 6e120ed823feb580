"""Round four of trying the framework as a new user and a hostile machine would (issue 40), 53 cases of our own:
command-line and config mistakes, data files that are wrong (or unusual and valid), models and methods that do
not combine, run directories used the wrong way. Each mistake must end with exit 2, one `error:` line that names
the place, no traceback and no run directory left; each valid input must train (exit 0). All of them run in this
process, one after the other, on one tiny data set (about three minutes: slow tests)."""
import contextlib
import io
import json
import os
import traceback

import pytest
import yaml
from conftest import make_texts, tiny_config_dict, write_tiny_files, write_tsv

import train

pytestmark = pytest.mark.slow
DEL = object()


def test_round_four_cases(tmp_path):
    W = str(tmp_path)
    files = write_tiny_files(W)
    base = tiny_config_dict(files, "fgm")
    results = []

    def cfg_file(name, cfg=None, text=None):
        path = f"{W}/{name}.yaml"
        with open(path, "w") as f:
            f.write(text if text is not None else yaml.safe_dump(cfg))
        return path

    def mod(**changes):
        c = json.loads(json.dumps(base))
        for key, value in changes.items():
            section, _, k = key.partition("__")
            if value is DEL:
                c[section].pop(k, None)
            elif k:
                c.setdefault(section, {})[k] = value
            else:
                c[section] = value
        return c

    def case(name, argv, expect=2, must=None):
        run_dir = argv[argv.index("--run-dir") + 1] if "--run-dir" in argv else None
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                rc = train.main(argv)
        except SystemExit as e:
            rc = e.code
        except BaseException:  # noqa: BLE001  (a case that escapes is a finding, not a crash of the test)
            rc = "exception"
            err.write(traceback.format_exc())
        text = err.getvalue()
        errors = [line for line in text.splitlines() if line.startswith("error")]
        problems = []
        if rc != expect:
            problems.append(f"exit {rc}, expected {expect}")
        if "Traceback" in text:
            problems.append("traceback")
        if expect == 2 and len(errors) != 1:
            problems.append(f"{len(errors)} error lines")
        if must and expect == 2 and errors and must not in errors[0]:
            problems.append(f"the message lacks {must!r}")
        if expect == 2 and run_dir and os.path.isdir(run_dir) and os.listdir(run_dir) and not run_dir.endswith("/ok"):
            problems.append("a run directory was left")
        results.append((name, problems, (errors[:1] or [""])[0]))

    def R(name):
        return f"{W}/runs/{name}"

    def c(name, cfg=None, text=None):
        return ["--config", cfg_file(name, cfg, text), "--run-dir", R(name)]
    # -- the command line and config files
    case("set unknown section", c("c1", base) + ["--set", "foo.bar=1"], must="foo")
    case("set index on one regularizer", c("c2", base) + ["--set", "regularizer.5.epsilon=1"])
    case("set wrong type", c("c3", base) + ["--set", "train.epochs=abc"], must="train.epochs")
    os.makedirs(f"{W}/adir.yaml", exist_ok=True)
    case("config is a directory", ["--config", f"{W}/adir.yaml", "--run-dir", R("c4")])
    case("config top level is a list", c("c5", text="- a\n- b\n"))
    case("config empty file", c("c6", text=""))
    cfg_file("loopa", text="base: loopb.yaml\n")
    cfg_file("loopb", text="base: loopa.yaml\n")
    case("base chain cycle", ["--config", f"{W}/loopa.yaml", "--run-dir", R("c7")])
    case("base missing", c("c8", text="base: nothere.yaml\n"), must="nothere")
    case("yaml tab indentation", c("c9", text="data:\n\tbatch_size: 8\n"))
    case("yaml duplicate key", c("c10", text="train: {epochs: 1}\ntrain: {epochs: 2}\n"))
    case("config path does not exist", ["--config", f"{W}/nope.yaml", "--run-dir", R("c11")])
    open(f"{W}/c12.yaml", "wb").write(b"data: {tokenizer: \xff\xfe}\n")
    case("config not utf-8", ["--config", f"{W}/c12.yaml", "--run-dir", R("c12")], must="c12.yaml")
    # -- data
    write_tsv(f"{W}/onlyheader.tsv", [])
    case("train file header only", c("d1", mod(data__train=f"{W}/onlyheader.tsv")))
    write_tsv(f"{W}/oneclass.tsv", [(t, "pos") for t, _ in make_texts(20, seed=9)])
    case("train has one class", c("d2", mod(data__train=f"{W}/oneclass.tsv")))
    case("labels list misses a label", c("d3", mod(data__labels=["pos", "zzz"])))
    write_tsv(f"{W}/devnew.tsv", [(t, "other") for t, _ in make_texts(6, seed=8)])
    case("dev has an unseen label", c("d4", mod(data__dev=f"{W}/devnew.tsv")))
    open(f"{W}/nocol.tsv", "w").write("sentence\tlabel\nhello\tpos\n")
    case("dev lacks the text column", c("d5", mod(data__dev=f"{W}/nocol.tsv")), must="text")
    case("max_length 0", c("d6", mod(data__max_length=0)))
    case("batch_size -1", c("d7", mod(data__batch_size=-1)))
    case("split sums to 1.1", c("d8", mod(data__split=[0.8, 0.2, 0.1], data__dev=DEL, data__test=DEL)))
    rows = make_texts(48, seed=1)
    open(f"{W}/crlf.tsv", "w", newline="").write("text\tlabel\r\n" + "".join(f"{t}\t{y}\r\n" for t, y in rows))
    case("train with CRLF line ends (valid)", c("d9", mod(data__train=f"{W}/crlf.tsv")), expect=0)
    open(f"{W}/bom.tsv", "w", encoding="utf-8-sig").write("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    case("train with a UTF-8 BOM (valid)", c("d10", mod(data__train=f"{W}/bom.tsv")), expect=0)
    open(f"{W}/q.csv", "w").write('text,label\n"a good\nmovie",pos\n' + "".join(f'"{t}",{y}\n' for t, y in rows[1:]))
    case("csv with a quoted newline (valid)", c("d11", mod(data__train=f"{W}/q.csv")), expect=0)
    open(f"{W}/bad.jsonl", "w").write('{"text": "a", "label": "pos"}\n[1, 2]\n')
    case("jsonl line not an object", c("d12", mod(data__train=f"{W}/bad.jsonl")), must="bad.jsonl")
    case("unlabeled glob matches nothing", c("d13", mod(data__unlabeled=f"{W}/none_*.txt", regularizer={"name": "vat"})))
    open(f"{W}/bin.txt", "wb").write(bytes(range(256)) * 20)
    case("unlabeled is binary", c("d14", mod(data__unlabeled=f"{W}/bin.txt", regularizer={"name": "vat"})), must="bin.txt")
    case("text_b_column missing", c("d15", mod(data__text_b_column="second")), must="second")
    case("label column missing", c("d16", mod(data__label_column="y")), must="y")
    # -- model and methods
    case("model name unknown", c("m1", mod(model__name="gru")), must="model.name")
    case("pooling cls for lstm", c("m2", mod(model__pooling="cls")), must="pooling")
    case("regularizer typo", c("m3", mod(regularizer={"name": "fgmm"})), must="fgmm")
    case("epsilon negative", c("m4", mod(regularizer={"name": "fgm", "epsilon": -1})), must="epsilon")
    case("regularizer is a string", c("m5", mod(regularizer="fgm")))
    case("free with another", c("m6", mod(regularizer=[{"name": "free"}, {"name": "fgm"}])), must="free")
    case("learning rate nan", c("m7", text=yaml.safe_dump(base).replace("learning_rate: 0.01", "learning_rate: .nan")))
    case("monitor bogus", c("m8", mod(train__monitor="val_bogus")), must="monitor")
    case("hidden_size 0", c("m9", mod(model__hidden_size=0)), must="hidden_size")
    case("eval epsilons negative", c("m10", mod(eval__epsilons=[-1.0])), must="epsilons")
    case("init_from missing", c("m11", mod(model__init_from=f"{W}/nolm")), must="init_from")
    case("vocab_file missing", c("m12", mod(model__vocab_file=f"{W}/novocab.tsv")), must="novocab")
    open(f"{W}/vec.txt", "w").write("2 3\ngood 0.1 0.2 0.3\nbad 0.1 0.2 0.3\n")
    case("pretrained_embeddings wrong dim", c("m13", mod(model__pretrained_embeddings=f"{W}/vec.txt")), must="vec.txt")
    case("mirrored strategy without GPUs (valid: one CPU replica)", c("m14", mod(distribute={"strategy": "mirrored"})), expect=0)
    case("jit_compile bert without pretrained", c("m15", mod(model={"name": "bert"}, train__jit_compile=True)), must="model")
    case("lm task with data.train", c("m16", {**mod(), "task": "lm"}), must="task: lm")
    lm = {"task": "lm", "data": {"unlabeled": files["train"]}, "lm": {"softmax_samples": 0}, "regularizer": {"name": "none"}}
    case("lm softmax_samples 0", c("m17", lm), must="softmax_samples")
    # -- run directories
    os.makedirs(f"{W}/runs", exist_ok=True)
    open(f"{W}/runs/afile", "w").write("x")
    case("run-dir is a file", ["--config", cfg_file("r1", base), "--run-dir", f"{W}/runs/afile"])
    case("resume a non-run dir", ["--resume", W], must="not a run directory")
    case("resume a missing dir", ["--resume", f"{W}/nothing"], must="does not exist")
    case("a valid run (reference)", ["--config", cfg_file("r4", base), "--run-dir", R("ok")], expect=0)
    case("resume a finished run", ["--resume", R("ok")], must="finished")
    case("init_from a classifier run", c("r6", mod(model__init_from=R("ok"))), must="init_from")
    case("run-dir is the finished run", ["--config", cfg_file("r7", base), "--run-dir", R("ok")], must="run-dir")
    case("config and resume together", ["--config", cfg_file("r8", base), "--resume", R("ok")])

    failed = [f"{name}: {problems} ({line})" for name, problems, line in results if problems]
    assert len(results) == 53
    assert not failed, "\n".join(failed)
