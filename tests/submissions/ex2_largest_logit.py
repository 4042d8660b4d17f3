"""Exercise 2, a mistake: the most confident mistake chosen by the largest logit, not the probability."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import names, solution  # noqa: E402

_s = solution(2)
_right = _s.answer_questions
_torch = _s.torch


def answer_questions(model, images, labels):
    answers = _right(model, images, labels)
    wrong, predicted = _s.find_mistakes(model, images, labels)
    with _torch.no_grad():
        top = model(images[wrong]).gather(1, predicted[:, None])[:, 0]
    answers["most_confident_mistake"] = int(wrong[int(top.argmax())])
    return answers


_s.answer_questions = answer_questions
globals().update(names(_s))
