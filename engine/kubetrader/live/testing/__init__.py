"""Stand-ins for the broker side, used by the tests, the benchmark and `kubetrader live peer`.

`tws_peer.TwsPeer` speaks the TWS socket protocol to the real ib_insync client, so the
code under test is the code that runs against a real IB Gateway.
"""
