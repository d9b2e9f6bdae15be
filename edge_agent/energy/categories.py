"""The national sub-metering classification of public buildings, as data.

Media (分类能耗) and the sub-items of electricity (分项能耗) of the 国家机关办公建筑和大型
公共建筑能耗监测系统分项能耗数据采集技术导则. The grouping A-D and the sub-items are
confirmed from secondary sources; the five-character codes are not confirmed against the
guideline's text (docs/energy-accounting.md, "Categories"): they are data, used only in
reports, never in the accounting.
"""

from __future__ import annotations

from typing import Literal

Medium = Literal["electricity", "water", "gas", "heat", "cooling"]

# medium -> (code, Chinese name, the units a meter of it may count in)
MEDIA: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "electricity": ("01000", "电", ("kWh", "MWh")),
    "water": ("02000", "水", ("m3", "t")),
    "gas": ("03000", "燃气", ("m3", "Nm3")),
    "heat": ("04000", "集中供热量", ("GJ", "MJ", "kWh")),
    "cooling": ("05000", "集中供冷量", ("GJ", "MJ", "kWh")),
}

# electricity category -> (code, Chinese name, {sub-item: (code, Chinese name)})
CATEGORIES: dict[str, tuple[str, str, dict[str, tuple[str, str]]]] = {
    "lighting_sockets": (
        "01A00",
        "照明插座用电",
        {
            "rooms": ("01A10", "照明与插座"),
            "corridors_emergency": ("01A20", "走廊与应急"),
            "outdoor": ("01A30", "室外景观照明"),
        },
    ),
    "air_conditioning": (
        "01B00",
        "空调用电",
        {
            "plant": ("01B10", "冷热站"),
            "terminals": ("01B20", "空调末端"),
        },
    ),
    "power": (
        "01C00",
        "动力用电",
        {
            "lifts": ("01C10", "电梯"),
            "pumps": ("01C20", "水泵"),
            "fans": ("01C30", "通风机"),
        },
    ),
    "special": (
        "01D00",
        "特殊用电",
        {
            "it_room": ("01D10", "信息中心"),
            "laundry": ("01D20", "洗衣房"),
            "kitchen": ("01D30", "厨房餐厅"),
            "pool": ("01D40", "游泳池"),
            "gym": ("01D50", "健身房"),
            "other": ("01D60", "其他"),
            # A hospital's own special uses: not in the guideline, reported under 01D
            # with codes of our own.
            "medical_equipment": ("01D91", "医疗设备"),
            "clean_operating_rooms": ("01D92", "洁净手术部"),
        },
    ),
}
