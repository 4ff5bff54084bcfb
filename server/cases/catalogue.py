"""Reference data for the case files: the matter-type catalogue (Open311-style) and the
holiday calendar. `load_case_reference` is idempotent; the demo loader and tests call it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.cases.holiday_calendar import shipped_days
from server.cases.models import Category, Holiday, KnowledgeArticle, MatterType

_T = {"name": "", "label": "", "type": "text", "required": False}


def _f(name: str, label: str, kind: str = "text", required: bool = True) -> dict[str, Any]:
    return {**_T, "name": name, "label": label, "type": kind, "required": required}


#: (code, name, category, default department code, required fields, deadline overrides)
MATTER_TYPES: list[tuple[str, str, Category, str | None, list[dict[str, Any]], dict[str, int]]] = [
    (
        "wage_arrears",
        "拖欠工资",
        Category.appeal,
        "hrss",
        [
            _f("employer", "用人单位"),
            _f("months", "拖欠月数", "int"),
            _f("workers", "涉及人数", "int", False),
        ],
        {"handling": 30},
    ),
    ("social_insurance", "社保缴纳", Category.appeal, "hrss", [_f("employer", "用人单位")], {}),
    (
        "property_management",
        "物业管理纠纷",
        Category.appeal,
        "housing",
        [_f("estate", "小区名称")],
        {},
    ),
    ("housing_quality", "房屋质量", Category.appeal, "housing", [_f("estate", "小区名称")], {}),
    ("demolition", "征迁补偿", Category.appeal, "housing", [_f("project", "项目名称")], {}),
    ("noise", "噪声扰民", Category.appeal, "urban", [_f("location", "发生地点")], {"handling": 15}),
    ("illegal_building", "违章建筑", Category.appeal, "urban", [_f("location", "发生地点")], {}),
    ("food_safety", "食品安全", Category.appeal, "market", [_f("shop", "经营者名称")], {}),
    ("consumer_dispute", "消费纠纷", Category.appeal, "market", [_f("shop", "经营者名称")], {}),
    ("elderly_care", "养老服务", Category.appeal, "civil", [], {}),
    ("low_income", "低保救助", Category.appeal, "civil", [], {}),
    ("land_planning", "规划用地", Category.appeal, "planning", [_f("location", "地块位置")], {}),
    ("medical_dispute", "医疗纠纷", Category.appeal, "health", [_f("hospital", "医疗机构")], {}),
    ("labour_arbitration", "劳动争议仲裁", Category.appeal, "arbitration", [], {}),
    ("neighbour_dispute", "邻里纠纷", Category.appeal, "people_mediation", [], {}),
    ("policy_suggestion", "意见建议", Category.suggestion, None, [], {}),
    (
        "official_misconduct",
        "检举控告（公职人员）",
        Category.accusation,
        None,
        [_f("accused", "被检举单位或人员")],
        {},
    ),
]

KNOWLEDGE: list[tuple[str, str, str | None]] = [
    (
        "拖欠工资怎么办",
        "可向区人力社保局劳动保障监察投诉，或向劳动人事争议仲裁院申请仲裁；仲裁时效一年。",
        "wage_arrears",
    ),
    (
        "物业费争议的处理途径",
        "先由社区、街道组织业主委员会与物业企业协商，协商不成可申请人民调解或提起诉讼。",
        "property_management",
    ),
    ("噪声扰民投诉", "夜间施工噪声由城管部门处理，社会生活噪声可先由社区调解。", "noise"),
    (
        "信访事项的办理期限",
        "受理告知15日，办理期限60日，可延期一次不超过30日；不服可在收到答复之日起30日内申请复查。",
        None,
    ),
    (
        "劳动争议仲裁申请",
        "向区劳动人事争议仲裁院提交仲裁申请书，仲裁不收费。",
        "labour_arbitration",
    ),
]


async def load_case_reference(session: AsyncSession, *, knowledge_at: Any = None) -> int:
    """Insert missing matter types, holidays and knowledge articles; returns rows added."""
    added = 0
    have = set(await session.scalars(select(MatterType.code)))
    for code, name, category, dept, fields, days in MATTER_TYPES:
        if code not in have:
            session.add(
                MatterType(
                    code=code,
                    name=name,
                    category=category,
                    fields=fields,
                    default_department_code=dept,
                    deadline_days=days,
                    active=True,
                )
            )
            added += 1
    days_have = set(await session.scalars(select(Holiday.day)))
    # the shipped 2026 calendar (the demo loader and the admin page load whole years)
    for entry in shipped_days(2026):
        if entry.date not in days_have:
            session.add(Holiday(day=entry.date, workday=entry.workday, name=entry.name))
            added += 1
    if (
        knowledge_at is not None
        and await session.scalar(select(KnowledgeArticle.id).limit(1)) is None
    ):
        for title, body, mt in KNOWLEDGE:
            session.add(
                KnowledgeArticle(title=title, body=body, matter_type=mt, created_at=knowledge_at)
            )
            added += 1
    await session.flush()
    return added


async def active_matter_types(session: AsyncSession) -> list[tuple[str, str]]:
    """(code, name) of the active matter types; the built-in catalogue if none is loaded."""
    rows = (
        await session.execute(
            select(MatterType.code, MatterType.name)
            .where(MatterType.active.is_(True))
            .order_by(MatterType.id)
        )
    ).all()
    if rows:
        return [(str(c), str(n)) for c, n in rows]
    return [(code, name) for code, name, *_ in MATTER_TYPES]


async def matter_type_fields(session: AsyncSession) -> dict[str, list[dict[str, Any]]]:
    """Each active matter type's typed attributes (name, label, type, required), for the
    intake form; the built-in catalogue's if none is loaded."""
    rows = (
        await session.execute(
            select(MatterType.code, MatterType.fields).where(MatterType.active.is_(True))
        )
    ).all()
    if rows:
        return {str(c): list(f or []) for c, f in rows}
    return {code: fields for code, _, _, _, fields, _ in MATTER_TYPES}
