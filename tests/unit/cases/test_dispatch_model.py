"""Smart dispatch on a generated Chinese corpus beats the majority-class baseline clearly."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from server.dispatch.model import DispatchModel

TOPICS: dict[int, tuple[list[str], list[str]]] = {
    1: (
        ["拖欠工资", "工资未发", "社保未缴", "加班费", "劳动合同", "辞退补偿"],
        ["公司", "工厂", "老板"],
    ),
    2: (
        ["物业费", "电梯故障", "房屋漏水", "小区停车", "业委会", "维修基金"],
        ["小区", "物业", "楼道"],
    ),
    3: (
        ["夜间施工", "噪声扰民", "占道经营", "违章搭建", "垃圾清运", "油烟扰民"],
        ["路口", "工地", "门口"],
    ),
    4: (
        ["食品过期", "虚假宣传", "预付卡退费", "缺斤短两", "商品质量", "价格欺诈"],
        ["超市", "商家", "门店"],
    ),
    5: (
        ["低保申请", "养老补贴", "残疾补助", "临时救助", "养老院", "殡葬服务"],
        ["家里", "老人", "社区"],
    ),
}
FILLER = [
    "反映",
    "希望尽快处理",
    "多次协商无果",
    "请求有关部门",
    "已经持续很久",
    "影响生活",
    "去年开始",
    "本人",
    "我们",
    "情况属实",
]


def corpus(n: int, seed: int) -> tuple[list[str], list[int]]:
    rng = random.Random(seed)
    weights = [0.4, 0.2, 0.15, 0.15, 0.1]  # imbalanced: the majority class is 40%
    texts, labels = [], []
    for _ in range(n):
        dept = rng.choices(list(TOPICS), weights)[0]
        words, places = TOPICS[dept]
        # noise: sometimes a keyword of another department appears too
        other = TOPICS[rng.choice(list(TOPICS))][0]
        parts = [rng.choice(FILLER), rng.choice(places), rng.choice(words), rng.choice(FILLER)]
        if rng.random() < 0.3:
            parts.append(rng.choice(other))
        rng.shuffle(parts)
        texts.append("，".join(parts))
        labels.append(dept)
    return texts, labels


def test_beats_majority_baseline_on_held_out_cases(tmp_path: Path) -> None:
    train_x, train_y = corpus(600, seed=1)
    test_x, test_y = corpus(300, seed=2)
    model = DispatchModel()
    model.fit(train_x, train_y, case_ids=list(range(len(train_x))))
    accuracy = sum(p == y for p, y in zip(model.predict(test_x), test_y, strict=True)) / len(test_y)
    majority = Counter(train_y).most_common(1)[0][0]
    baseline = sum(y == majority for y in test_y) / len(test_y)
    assert accuracy >= baseline + 0.3, (accuracy, baseline)
    model.save(tmp_path / "m.pkl")
    loaded = DispatchModel.load(tmp_path / "m.pkl")
    s = loaded.suggest("小区电梯故障物业不修")
    assert s.departments[0].department_id == 2
    assert any(g in "小区电梯故障物业不修" for g in s.departments[0].reasons)
    assert s.similar and s.similar[0].similarity > 0
