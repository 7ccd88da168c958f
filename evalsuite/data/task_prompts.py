"""Zero-shot prompts of lm-evaluation-harness 0.4's stock tasks, character for character.

Each builder turns one dataset row (a dict, in the layout the task's data ships in) into an
`Example`: one `Request(context, continuation)` per choice, the gold index, and the strings whose
lengths `acc_norm` / `acc_bytes` divide by (lm-eval's `doc_to_choice`, without the delimiter).
What lm-eval's YAML / utils.py says, per task:

- hellaswag: `process_docs` (query = preprocess(activity_label + ": " + ctx_a + " " +
  ctx_b.capitalize()), choices = preprocess(ending)); target delimiter " ".
- arc_easy / arc_challenge: "Question: {question}\\nAnswer:", choices.text, gold = label index.
- piqa: "Question: {goal}\\nAnswer:", [sol1, sol2], gold = label.
- winogrande: partial scoring. Each option fills the blank; the context is the sentence up to the
  blank with the option, the continuation " " + the (stripped) rest after the blank, the same for
  every choice; `choices` are the contexts.
- lambada_openai: context = the text up to its last space, continuation = " " + last word
  (loglikelihood, no delimiter); acc = every continuation token greedy; perplexity over examples.
- boolq: "{passage}\\nQuestion: {question}?\\nAnswer:", ["no", "yes"] (google/boolq layout:
  boolean `answer`, passages without super_glue's title prefix).
- openbookqa: question_stem, choices.text, gold = label index of answerKey.lstrip().
- sciq: "{support.lstrip()}\\nQuestion: {question}\\nAnswer:", [d1, d2, d3, correct], gold 3.
- copa: premise without its final period + " because"/" therefore", choices " " + the choice with
  its first letter lowered; lm-eval's delimiter " " is added before them.
- mmlu: "{question.strip()}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:" after the description
  "The following are multiple choice questions (with answers) about {subject}.\\n\\n", choices
  A-D, gold = answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Request:
    """One log-likelihood query: log P(continuation | context)."""

    context: str
    continuation: str


@dataclass(frozen=True)
class Example:
    index: int  # row index in the split (the split's order, as lm-eval's --limit)
    requests: tuple[Request, ...]  # one per choice (LAMBADA: one)
    gold: int
    choices: tuple[str, ...]  # what acc_norm's length is taken of

    def key(self) -> list[Any]:
        """What binds this example: its prompts, choices and gold (hashed into the task identity)."""
        return [self.index, self.gold, [[r.context, r.continuation] for r in self.requests], list(self.choices)]


def multiple_choice(index: int, context: str, choices: list[str], gold: int, delimiter: str = " ") -> Example:
    if not 0 <= gold < len(choices):
        raise ValueError(f"row {index}: gold index {gold} is outside its {len(choices)} choices")
    return Example(index, tuple(Request(context, delimiter + c) for c in choices), gold, tuple(choices))


def hellaswag_preprocess(text: str) -> str:
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def hellaswag(i: int, d: Row) -> Example:
    ctx = d["ctx_a"] + " " + d["ctx_b"].capitalize()
    query = hellaswag_preprocess(d["activity_label"] + ": " + ctx)
    return multiple_choice(i, query, [hellaswag_preprocess(e) for e in d["endings"]], int(d["label"]))


def arc(i: int, d: Row) -> Example:
    labels = list(d["choices"]["label"])
    return multiple_choice(i, f"Question: {d['question']}\nAnswer:", list(d["choices"]["text"]),
                           labels.index(d["answerKey"]))


def piqa(i: int, d: Row) -> Example:
    return multiple_choice(i, f"Question: {d['goal']}\nAnswer:", [d["sol1"], d["sol2"]], int(d["label"]))


def winogrande(i: int, d: Row) -> Example:
    sentence = d["sentence"]
    blank = sentence.index("_")
    contexts = [sentence[:blank] + d["option1"], sentence[:blank] + d["option2"]]
    target = " " + sentence[blank + 1 :].strip()
    gold = {"1": 0, "2": 1}[d["answer"]]
    return Example(i, tuple(Request(c, target) for c in contexts), gold, tuple(contexts))


def lambada(i: int, d: Row) -> Example:
    words = d["text"].split(" ")
    return Example(i, (Request(" ".join(words[:-1]), " " + words[-1]),), 0, (" " + words[-1],))


def boolq(i: int, d: Row) -> Example:
    return multiple_choice(i, f"{d['passage']}\nQuestion: {d['question']}?\nAnswer:", ["no", "yes"],
                           int(bool(d["answer"])))


def openbookqa(i: int, d: Row) -> Example:
    labels = list(d["choices"]["label"])
    return multiple_choice(i, d["question_stem"], list(d["choices"]["text"]), labels.index(d["answerKey"].lstrip()))


def sciq(i: int, d: Row) -> Example:
    context = f"{d['support'].lstrip()}\nQuestion: {d['question']}\nAnswer:"
    return multiple_choice(i, context, [d["distractor1"], d["distractor2"], d["distractor3"], d["correct_answer"]], 3)


def _copa_choice(choice: str) -> str:
    return choice[0].lower() + choice[1:]


def copa(i: int, d: Row) -> Example:
    connector = {"cause": "because", "effect": "therefore"}[d["question"]]
    context = d["premise"].strip()[:-1] + f" {connector}"
    return multiple_choice(i, context, [" " + _copa_choice(d["choice1"]), " " + _copa_choice(d["choice2"])],
                           int(d["label"]))


def mmlu(i: int, d: Row) -> Example:
    subject = str(d["subject"]).replace("_", " ")
    c = d["choices"]
    context = (f"The following are multiple choice questions (with answers) about {subject}.\n\n"
               f"{d['question'].strip()}\nA. {c[0]}\nB. {c[1]}\nC. {c[2]}\nD. {c[3]}\nAnswer:")
    return multiple_choice(i, context, ["A", "B", "C", "D"], int(d["answer"]))


BUILDERS: dict[str, Callable[[int, Row], Example]] = {
    "hellaswag": hellaswag, "arc": arc, "piqa": piqa, "winogrande": winogrande, "lambada": lambada,
    "boolq": boolq, "openbookqa": openbookqa, "sciq": sciq, "copa": copa, "mmlu": mmlu,
}
