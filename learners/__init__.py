"""Built-in learners, registered lazily so that heavy optional packages load only when used."""

from bench.learner import LEARNERS

_BUILTIN = {
    "oracle": "learners.oracle:Oracle",
    "global-mean": "learners.baselines:GlobalMean",
    "item-mean": "learners.baselines:BiasBaseline",
    "mf": "learners.mf:MatrixFactorisation",
    "maml-l2l": "learners.maml:Learn2LearnMAML",
    "maml": "learners.maml:VectorisedMAML",
    "protonet": "learners.protonet:PrototypicalNetwork",
    "fine-tune": "learners.finetune:FineTune",
}

for _name, _target in _BUILTIN.items():
    if _name not in LEARNERS:
        LEARNERS.register(_name, _target)
