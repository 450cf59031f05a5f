"""placeholder"""


class NacosServer: ...


class NacosUnavailable(RuntimeError): ...
