"""Repository-wide pytest options."""


def pytest_addoption(parser):
    parser.addoption("--cases", type=int, default=None,
                     help="random RTL cases per simulator for the differential regression "
                          "(default 216; raise it for soak runs)")
