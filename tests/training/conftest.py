import pytest
import torch

from bsnn.training.data import default_root


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def need(sub: str):
    path = default_root() / sub
    return pytest.mark.skipif(not path.exists(), reason=f"dataset {path} not present")
