"""The command line's toolkit: argparse as every hiper command uses it, flags read the way a
--config file's values are, defaults shown in the help, errors on one line naming the flag; and
`hiper train`'s own flags (one per TrainConfig field, --config, --resume, --check).

Here, below hiper.cli, so that the studies (hiper.studies.*), which hiper.cli's `hiper bench`
loads, can build their flags and read `hiper train`'s without importing hiper.cli back.
"""
from __future__ import annotations

import argparse
import difflib
import re
from pathlib import Path

__all__ = ["COUNT", "NOT_NEGATIVE", "TEMPERATURE", "TOP_P", "TRAIN_FLAG_GROUPS", "ExamplesHelpFormatter",
           "HelpFormatter", "Parser", "add_boolean_flag", "add_config_flags", "add_train_flags", "bounded", "checked",
           "closest_flags", "flag_type", "given_train_values", "name_flag", "parse_train_flags", "read_config_file",
           "shown", "train_config", "train_flag_groups"]


def shown(value) -> str:
    """A default as a flag or a YAML file spells it."""
    if isinstance(value, bool):
        return str(value).lower()
    return '""' if value == "" else str(value)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's default after its description, unless the description gives it already (or
    there is none to give)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if not action.option_strings or action.default in (None, argparse.SUPPRESS) or "default" in text:
            return text
        return text + f" (default: {shown(action.default)})".replace("%", "%%")


class ExamplesHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """HelpFormatter that prints the description and epilog as written: command lines stay whole."""


class Parser(argparse.ArgumentParser):
    """argparse as every hiper command uses it: defaults shown in the help, a --debug flag, errors
    on one line, an unknown flag answered with the closest known ones (parse_known_args refuses
    unknown arguments as parse_args does), and `flag_names`, the flag of each destination, so that
    an error naming an argument (`envs: ...`) can name the flag the user typed (`--envs: ...`)."""

    def __init__(self, *args, **kwargs):
        self.flag_names: dict[str, str] = {}  # filled by add_argument, which argparse's __init__ already calls
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.set_defaults(flag_names=self.flag_names)
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help="show the traceback of an error too (or set HIPER_DEBUG=1)")

    def add_argument(self, *args, **kwargs):
        return self._note_flag(super().add_argument(*args, **kwargs))

    def add_argument_group(self, *args, **kwargs):
        # A group's add_argument is argparse's own, which never calls the parser's: its flags
        # are noted in flag_names here.
        group = super().add_argument_group(*args, **kwargs)
        add = group.add_argument
        group.add_argument = lambda *a, **k: self._note_flag(add(*a, **k))
        return group

    def _note_flag(self, action: argparse.Action) -> argparse.Action:
        if action.option_strings and action.help is not argparse.SUPPRESS:  # not a hidden alias
            self.flag_names.setdefault(action.dest, max(action.option_strings, key=len))
        return action

    def parse_known_args(self, args=None, namespace=None):
        # A command's parser (hiper train's) is run through parse_known_args by its parent's,
        # which reports what it did not know as the parent's own, against the parent's flags
        # and help. The command refuses them itself, with its own flags to suggest.
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(self._unrecognized(extras))
        return namespace, extras

    def _unrecognized(self, extras: list[str]) -> str:
        """argparse's "unrecognized arguments: ..." and, for each unknown flag, the closest known ones."""
        known = [flag for action in self._actions if action.help is not argparse.SUPPRESS
                 for flag in action.option_strings]
        hints = []
        for unknown in dict.fromkeys(arg.split("=", 1)[0] for arg in extras if arg.startswith("-")):
            close = closest_flags(unknown, known)
            if close:
                hints.append((unknown, close))
        message = f"unrecognized arguments: {' '.join(extras)}"
        if len(hints) == 1:
            message += f"; did you mean {', '.join(hints[0][1])}?"
        elif hints:
            message += "; did you mean " + ", ".join(f"{', '.join(close)} (for {unknown})"
                                                      for unknown, close in hints) + "?"
        return message

    def error(self, message: str):
        # argparse's "argument --envs: invalid ..." as hiper's other errors put it: the flag first, one line.
        message = re.sub(r"^argument ([^\s/:]+)(?:/\S+)?: ", r"\1: ", message)
        self.exit(2, f"hiper: error: {message} (see {self.prog} --help)\n")


def closest_flags(unknown: str, known: list[str], most: int = 5) -> list[str]:
    """The flags of `known` that `unknown` most likely meant: those holding its words as a run of
    their own (--lr: --actor-lr, --critic-lr; --turns: --max-turns), then those spelled closest
    (difflib: --max-turn, --temprature), at most `most`, in that order."""
    words = [w for w in unknown.lstrip("-").split("-") if w]

    def holds_words(flag: str) -> bool:
        theirs = flag.lstrip("-").split("-")
        return bool(words) and any(theirs[i:i + len(words)] == words for i in range(len(theirs) - len(words) + 1))

    containing = [flag for flag in known if holds_words(flag)]
    spelled = difflib.get_close_matches(unknown, known, n=most, cutoff=0.75)
    return list(dict.fromkeys(containing + spelled))[:most]


def flag_type(kind: type):
    """argparse's `type=` for a flag holding a `kind` (bool, int, float or str), read the way a
    --config file's value is (hiper.settings.parse_value): `--norm-adv no`, `--actor-lr 1e-6`."""
    def read(text: str):
        from hiper.settings import parse_value

        try:
            return parse_value(kind, text)
        except TypeError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    read.__name__ = kind.__name__  # argparse names the type in some messages
    return read


def bounded(kind: type, rule: str, holds):
    """A flag type for a `kind` that must satisfy `holds` (`rule` says how, in the error)."""
    read = flag_type(kind)

    def check(text: str):
        value = read(text)
        if not holds(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {value!r}")
        return value

    check.__name__ = kind.__name__
    return check


def checked(check, name: str):
    """A flag type that passes the text to `check` (a library function raising ValueError("name:
    ...")), so that a bad value stops the command at once, before a model loads."""
    def read(text: str) -> str:
        try:
            check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{name}: ")) from None
        return text

    return read


COUNT = bounded(int, ">= 1", lambda v: v >= 1)
NOT_NEGATIVE = bounded(int, ">= 0", lambda v: v >= 0)
TEMPERATURE = bounded(float, ">= 0", lambda v: v >= 0)
TOP_P = bounded(float, "in (0, 1]", lambda v: 0 < v <= 1)


def add_boolean_flag(parser: argparse.ArgumentParser, flag: str, *, default: bool, help: str,
                     hidden_alias: str | None = None) -> None:
    """A flag that takes `--flag`, `--flag true` and `--flag false` (also yes/no, on/off, 1/0);
    `hidden_alias` is an older spelling that still works but is not shown in the help."""
    action = parser.add_argument(flag, nargs="?", const=True, default=default, type=flag_type(bool),
                                 metavar="true|false", help=help)
    if hidden_alias:
        parser.add_argument(hidden_alias, dest=action.dest, nargs="?", const=True, default=argparse.SUPPRESS,
                            type=flag_type(bool), help=argparse.SUPPRESS)


def name_flag(message: str, flag_names: dict[str, str]) -> str:
    """`envs: ...` -> `--envs: ...` when `envs` is the destination of one of the command's flags."""
    match = re.match(r"([A-Za-z_]\w*): ", message)
    if match and match.group(1) in flag_names:
        return flag_names[match.group(1)] + message[match.end(1):]
    return message


# ---------------------------------------------------------------------------------------------
# `hiper train`'s flags: every TrainConfig field, a --config file, --resume and --check
# ---------------------------------------------------------------------------------------------

# `hiper train --help` lists its flags, one per TrainConfig field, in these groups (title:
# description, fields), each group's in TrainConfig's order. Every field is in exactly one: a
# field left out or named twice, or a name that is no field, stops the parser's construction
# (train_flag_groups), and tests/test_cli.py checks it too.
TRAIN_FLAG_GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "environment": ("the games, and how many play at once",
                    ("env", "split", "data", "tasks", "game_params", "envs", "workers")),
    "model": ("the policy, and where it runs", ("model", "tiny_model", "device")),
    "rollout": ("how the policy plays each step's episodes",
                ("max_turns", "max_new_tokens", "max_prompt_length", "temperature", "top_p", "engine",
                 "history_length")),
    "estimator": ("the advantages (HAE, or a flat baseline) and the rewards they see",
                  ("estimator", "group_size", "flat_reward", "gigpo_gamma", "gigpo_step_weight", "gigpo_mode",
                   "gamma", "lam_turn", "lam_seg", "norm_adv", "bootstrap_truncated", "keep_penalty",
                   "keep_penalty_mode", "keep_consistency_penalty", "invalid_action_penalty_coef")),
    "optimisation": ("the PPO updates of the actor and the critic",
                     ("actor_lr", "critic_lr", "weight_decay", "freeze_embeddings", "grad_clip", "ppo_epochs",
                      "critic_epochs",
                      "mini_batch_size", "micro_batch_size", "gradient_checkpointing", "clip_ratio", "clip_ratio_c",
                      "entropy_coeff", "kl_coef", "cliprange_value", "value_scale", "value_norm",
                      "critic_warmup", "min_explained_variance", "high_value_coef",
                      "term_value_coef", "shared_critic")),
    "LoRA and precision": ("adapters instead of full fine-tuning, autocast, and the size of the update passes",
                           ("lora_rank", "lora_alpha", "lora_dropout", "lora_targets", "micro_batch_tokens",
                            "precision")),
    "run": ("its length, seed, directory, checkpoints and evaluations",
            ("steps", "seed", "run_dir", "overwrite", "save_every", "eval_every", "eval_envs", "eval_split",
             "progress")),
}


def train_flag_groups() -> dict[str, str]:
    """The group title of every TrainConfig field (TRAIN_FLAG_GROUPS turned around); a field in no
    group or in two, or a group naming no field, is refused: `hiper train --help` would lose it."""
    import dataclasses

    from hiper.train_config import TrainConfig

    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    group_of: dict[str, str] = {}
    for title, (_, names) in TRAIN_FLAG_GROUPS.items():
        for name in names:
            if name in group_of:
                raise ValueError(f"TRAIN_FLAG_GROUPS: {name} is in both {group_of[name]!r} and {title!r}")
            if name not in fields:
                raise ValueError(f"TRAIN_FLAG_GROUPS: {title!r} names {name}, which is no TrainConfig field")
            group_of[name] = title
    missing = [name for name in fields if name not in group_of]
    if missing:
        raise ValueError(f"TRAIN_FLAG_GROUPS: no group for the TrainConfig field(s) {', '.join(missing)}")
    return group_of


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (`--max-turns 8`, `--norm-adv false`, `--tiny-model`), with the
    field's description, default and choices (its metadata), its value read as the field's type,
    in its group of TRAIN_FLAG_GROUPS. The flags default to None, "not given", so that a --config
    file's value stands unless a flag overrides it."""
    import dataclasses

    from hiper.train_config import FIELD_TYPES, TrainConfig

    group_of = train_flag_groups()
    groups = {title: parser.add_argument_group(title, description)
              for title, (description, _) in TRAIN_FLAG_GROUPS.items()}
    for f in dataclasses.fields(TrainConfig):
        group = groups[group_of[f.name]]
        kind, _ = FIELD_TYPES[f.name]
        text = f.metadata.get("help", "")
        if f.default is not None and "default" not in text:
            text += f" (default: {shown(f.default)})"
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            group.add_argument(flag, dest=f.name, nargs="?", const=True, default=None, type=flag_type(bool),
                               metavar="true|false", help=text.replace("%", "%%"))
        else:
            group.add_argument(flag, dest=f.name, default=None, type=flag_type(kind),
                               choices=f.metadata.get("choices"), help=text.replace("%", "%%"))


def read_config_file(path: str) -> dict:
    """The mapping of TrainConfig keys in YAML file `path` (an empty file: none)."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"config: cannot read {path} ({getattr(exc, 'strerror', None) or exc})") from exc
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"config: {path} is not valid YAML ({' '.join(str(exc).split())})") from exc
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise TypeError(f"config: {path} must hold a mapping of TrainConfig keys (envs: 4, ...), "
                         f"not a {type(values).__name__}")
    return values


def given_train_values(args: argparse.Namespace) -> tuple[dict, dict]:
    """The TrainConfig values given explicitly: (the --config file's keys, the flags given)."""
    import dataclasses

    from hiper.train_config import TrainConfig

    from_file = read_config_file(args.config) if args.config else {}
    from_flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                  if getattr(args, f.name) is not None}
    return from_file, from_flags


def train_config(args: argparse.Namespace):
    """The run's TrainConfig: the --config file's keys, overridden by the flags given. A value the
    config refuses is named as the flag that gave it (by `main`), or as its key in the file."""
    from hiper.train_config import config_from_dict

    from_file, from_flags = given_train_values(args)
    try:
        return config_from_dict({**from_file, **from_flags})
    except (ValueError, TypeError) as exc:
        named = re.match(r"([A-Za-z_]\w*): ", str(exc))
        if named and named.group(1) in from_file and named.group(1) not in from_flags:
            raise (ValueError if isinstance(exc, ValueError) else TypeError)(f"config key {exc}") from exc
        raise


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """`hiper train`'s flags: --config, --resume, --check and one flag per TrainConfig field."""
    parser.usage = ("%(prog)s [--config YAML] [--resume [--override]] [--check] [--FIELD VALUE ...] (every "
                    "TrainConfig field)")
    parser.add_argument("--config", metavar="YAML",
                        help="YAML file of TrainConfig keys (see configs/); flags override it")
    add_boolean_flag(parser, "--resume", default=False,
                     help="continue the run in --run-dir from its checkpoint, with the configuration it was started "
                          "with: a flag that would change it is refused, except those of hiper.resume.RESUMABLE "
                          "(--steps, the evaluations, checkpoints and bars, --device, --workers, --engine)")
    add_boolean_flag(parser, "--override", default=False,
                     help="with --resume: take the flags given even where they change the run's configuration "
                          "(each change is logged)")
    add_boolean_flag(parser, "--check", default=False,
                     help="check the configuration (flags, --config, device, games, run directory), print it as "
                          "YAML and stop, loading no model")
    add_config_flags(parser)


def parse_train_flags(argv: list[str]):
    """The TrainConfig that `hiper train ARGV` would run (--config read, the flags over it). A bad
    flag exits as hiper train's parser does (`hiper: error: --envs: ...`, status 2); a value the
    config refuses raises, named as its flag or config key."""
    parser = Parser(prog="hiper train")
    add_train_flags(parser)
    return train_config(parser.parse_args(argv))
