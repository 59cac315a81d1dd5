"""The prompt check's corpora: the listed words, evasions of them that must be caught, and
ordinary prompts that must not be (some hold a listed word's letters inside other words)."""

from __future__ import annotations

from shengtu.safety.words import Entry

LISTED: tuple[Entry, ...] = (
    Entry("色情", "block"),
    Entry("裸体", "block"),
    Entry("毒品", "replace"),
    Entry("赌博", "review"),
    Entry("枪支", "block"),
    Entry("恐怖袭击", "block"),
    Entry("自杀", "block"),
    Entry("sex", "block"),
    Entry("porn", "block"),
    Entry("nude", "block"),
    Entry("cocaine", "replace"),
    Entry("gambling", "review"),
)

# Traditional forms of the listed Chinese words (OpenCC's t2s folds them back).
_TRADITIONAL = {
    "裸体": "裸體",
    "赌博": "賭博",
    "枪支": "槍支",
    "恐怖袭击": "恐怖襲擊",
    "自杀": "自殺",
}
_INVISIBLE = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e", "\u3164")
_SEPARATORS = (" ", ".", "-", "_", "*", "·", "。", "/", "|", "♥", "😀", "~")


def _full_width(word: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in word)


def _math_bold(word: str) -> str:
    return "".join(chr(0x1D41A + ord(c) - ord("a")) if "a" <= c <= "z" else c for c in word.lower())


def _circled(word: str) -> str:
    return "".join(chr(0x24D0 + ord(c) - ord("a")) if "a" <= c <= "z" else c for c in word)


def _between(word: str, sep: str) -> str:
    return sep.join(word)


def evasions() -> list[tuple[str, str]]:
    """(prompt, the listed word it hides): at least a hundred, every kind of evasion."""
    out: list[tuple[str, str]] = []
    for entry in LISTED:
        w = entry.word
        latin = w.isascii()
        forms = [
            _between(w, _INVISIBLE[len(out) % len(_INVISIBLE)]),
            _between(w, _SEPARATORS[len(out) % len(_SEPARATORS)]),
            _between(w, " "),
            _between(w, "\u200b \u200d"),
        ]
        if latin:
            forms += [
                w.upper(),
                w.title(),
                "".join(c.upper() if i % 2 else c for i, c in enumerate(w)),
                _full_width(w),
                _full_width(w.upper()),
                _math_bold(w),
                _circled(w),
                "".join(c + "\u0301" for c in w),  # combining accents
                _between(_full_width(w), "\u200b"),
            ]
        else:
            forms += [
                _TRADITIONAL.get(w, w),
                _between(_TRADITIONAL.get(w, w), "\u200c"),
                _between(w, "，"),
                _between(w, "🔥"),
            ]
        for form in forms:
            out.append(
                (f"画一张关于{form}的海报" if not latin else f"a poster about {form}, 4k", w)
            )
            out.append((form, w))
    return out


ORDINARY: tuple[str, ...] = (
    "一只可爱的橘猫坐在窗台上,阳光洒在它的毛发上,水彩画风格",
    "赛博朋克风格的城市夜景,霓虹灯,下雨的街道,高清细节",
    "中国山水画,远山近水,一叶扁舟,留白",
    "宇航员在月球上骑马,超现实主义,8k",
    "a cozy cabin in the snowy mountains, warm light from the windows",
    "portrait of an old fisherman, dramatic lighting, oil painting",
    "Sussex countryside in spring, rolling green hills, sheep grazing",
    "a classroom full of students raising their hands, cartoon style",
    "this explains the water cycle: an educational infographic",
    "Essex coastline at sunset, seagulls, calm sea",
    "a therapist's office with plants and a comfortable sofa",
    "an assistant robot serving coffee in a modern kitchen",
    "Middlesex university campus, autumn leaves",
    "a sextant on an old nautical map, vintage still life",
    "sextet of jazz musicians playing on a small stage",
    "Pornic harbour in Brittany, fishing boats at dawn",
    "Nuder is not a word, but a nudibranch is: colourful sea slug macro photo",
    "nudibranch on coral reef, underwater photography",
    "a cocoa plantation in Ghana, workers harvesting pods",
    "gamblers' den in a 1920s film noir poster",  # not 'gambling' as a word
    "ambling through the park with a golden retriever",
    "a cowboy saloon with a piano and swinging doors",
    "春节庙会,舞龙舞狮,红灯笼高高挂",
    "熊猫在竹林里吃竹子,写实风格",
    "古风少女,汉服,桃花树下抚琴",
    "未来科技感的实验室,蓝色全息投影",
    "秋天的银杏大道,金黄的落叶铺满地面",
    "日出时分的黄山云海,壮丽的风景",
    "一碗热气腾腾的兰州牛肉面,美食摄影",
    "蒸汽朋克风格的机械猫头鹰",
    "小女孩在海边放风筝,温馨的插画",
    "敦煌壁画风格的飞天仙女",
    "江南水乡,小桥流水人家,烟雨朦胧",
    "极光下的冰岛小木屋,星空",
    "像素风格的复古游戏角色,8-bit",
    "一杯拿铁咖啡,拉花是心形,木质桌面",
    "星际战舰穿越小行星带,史诗感",
    "水墨风格的锦鲤在荷花池中游动",
    "北京故宫的雪景,红墙金瓦",
    "卡通风格的恐龙在草地上奔跑",
    "夏日海滩,椰子树,冲浪的人",
    "梵高星空风格的上海外滩",
    "一本打开的古书,旁边有羽毛笔和蜡烛",
    "森林里的小精灵,发光的蘑菇",
    "机甲战士站在废墟之上,夕阳",
    "手绘风格的世界地图,复古羊皮纸",
    "可爱的柴犬戴着墨镜,表情包",
    "樱花盛开的京都街道,和服少女",
    "国潮风格的老虎,红金配色",
    "雨后的彩虹挂在山谷之间",
    "a bowl of ramen with a soft-boiled egg, studio lighting",
    "minimalist logo of a fox, flat design, orange and white",
    "a lighthouse on a rocky cliff during a storm",
    "watercolor painting of tulips in a blue vase",
    "a steampunk airship above Victorian London",
    "isometric illustration of a tiny island with a windmill",
    "a knight in shining armor facing a dragon, epic fantasy art",
    "a bustling night market in Taipei, street food stalls",
    "macro photo of a dewdrop on a spider web",
    "a retro 1950s diner with a jukebox",
    "children building a sandcastle at the beach",
    "an astronaut floating inside the space station, photorealistic",
    "a Japanese zen garden with raked sand and stones",
    "a cat wearing a wizard hat reading a spell book",
    "a field of sunflowers under a bright blue sky",
    "a futuristic electric car in a glass showroom",
    "a medieval castle on a hill at golden hour",
    "a hummingbird drinking nectar from a red flower",
    "a library with endless bookshelves, magical realism",
    "a vintage typewriter on a wooden desk, film grain",
    "a snowy owl perched on a pine branch",
    "a coral reef with tropical fish, vibrant colors",
    "an old steam train crossing a stone bridge",
    "a bakery window full of croissants and baguettes",
    "a mountain lake reflecting the peaks, dawn mist",
    "pixel art of a wizard tower",
    "an elephant family walking across the savanna",
    "a glass terrarium with succulents",
    "a busy Tokyo crossing at night, long exposure",
    "a hot air balloon festival over Cappadocia",
    "The Sussex Express: a steam locomotive poster",
    "classic Essex barn conversion, interior design photo",
    "an expressive portrait, Rembrandt lighting",
    "a gas explosion safety poster for a chemistry lab, cartoon",
    "Paris expo pavilion, architectural rendering",
    "a kiss ex-wife comedy movie poster, pastel colors",
    "is expected to rain: a weather forecast illustration",
    "a sexy-free family friendly birthday party banner",  # 'sexy' is not 'sex' as a word
    "unisex t-shirt mockup, front and back",
    "product photo of lipstick in rosewood shade",
    "赌场风格的霓虹灯字体设计",  # 赌场 is not 赌博
    "博物馆里的青铜器,柔和的灯光",
    "色彩斑斓的热气球,情侣在观景台",  # 色…情 apart, not 色情
    "自行车手在杀青宴上合影",  # 自…杀 apart
    "毒蛇和品茶的老人,水墨画",  # 毒…品 apart
    "枪手乐队的复古海报与支架",
    "恐龙与怖畏的火山袭来,插画",
    "裸麦面包和体育场的早餐",
    "一位老人在公园里打太极拳",
    "sunrise over the Great Wall, panoramic",
    "a koi pond in autumn, overhead view",
)
