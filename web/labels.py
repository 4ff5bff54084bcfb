"""The zh-CN label of every code a page shows: case, session, call and deadline states, booking
and reminder statuses, participant roles, case timeline events. Pages never print a raw code:

    {{ _(label("session_state", s.state)) }}

The labels are msgids (Simplified Chinese) with English in messages.po; a test renders the pages
with every value and checks that no code shows and that each label has its English.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from scheduling.schemas import BookingStatus, JobKind, JobStatus
from server.cases.labels import STATE_LABELS as CASE_STATE_LABELS
from server.cases.schemas import CaseState
from server.cases.statemachine import TRANSITIONS
from server.org.schemas import Role
from server.queue.service import STATE_LABELS as CALL_STATE_LABELS
from server.sessions.schemas import ParticipantRole, SessionKind, SessionOutcome, SessionState

#: Staff roles, as the home page and the site page show them.
ROLE_LABELS: Mapping[Role, str] = {
    Role.community_agent: "代办员",
    Role.street_coordinator: "协调员",
    Role.centre_supervisor: "督导员",
    Role.window_officer: "窗口接待员",
    Role.dept_handler: "承办人",
    Role.dept_leader: "部门负责人",
    Role.supervising_leader: "督办领导",
    Role.mediator: "调解员",
    Role.expert: "专家",
    Role.court_liaison: "法院联络员",
    Role.sys_admin: "系统管理员",
    Role.sec_admin: "安全管理员",
    Role.audit_admin: "审计管理员",
}

#: Case states in the words a petitioner reads on the follow page (kiosk QR code).
CASE_STATE_PUBLIC_LABELS: Mapping[str, str] = {
    CaseState.registered: "已登记",
    CaseState.accepted: "已受理",
    CaseState.handling: "办理中",
    CaseState.replied: "已答复",
    CaseState.evaluated: "已评价",
    CaseState.revisited: "已回访",
    CaseState.closed: "已结案",
    CaseState.not_accepted: "不予受理",
    CaseState.redirected_legal: "导入法定途径",
    CaseState.transferred: "已转送",
    CaseState.review: "复查中",
    CaseState.re_review: "复核中",
    CaseState.terminated: "已终止",
}

SESSION_STATE_LABELS: Mapping[str, str] = {
    SessionState.scheduled: "已预约",
    SessionState.lobby: "候会中",
    SessionState.live: "进行中",
    SessionState.ended: "已结束",
    SessionState.cancelled: "已取消",
    SessionState.no_show: "未到场",
}

SESSION_KIND_LABELS: Mapping[str, str] = {
    SessionKind.reception: "视频接访",
    SessionKind.mediation: "视频调解",
}

SESSION_OUTCOME_LABELS: Mapping[str, str] = {
    SessionOutcome.agreement: "达成调解协议",
    SessionOutcome.no_agreement: "未达成协议",
    SessionOutcome.party_withdrew: "当事人撤回",
    SessionOutcome.adjourned: "休会改期",
    SessionOutcome.completed: "已办结",
    SessionOutcome.interrupted: "中断",
    SessionOutcome.case_accepted: "已受理为案件",
    SessionOutcome.advice_given: "当场答复",
    SessionOutcome.referred: "引导至法定途径",
    SessionOutcome.joint_mediation: "转联合调处",
}

#: A participant's last answer to the recording question (server.sessions.record).
CONSENT_LABELS: Mapping[str, str] = {
    "given": "同意录音录像",
    "refused": "拒绝录音录像",
    "none": "未作答",
}

#: The kinds of bookable rooms and windows (server.org.models.ResourceType).
RESOURCE_TYPE_LABELS: Mapping[str, str] = {
    "window": "综合窗口",
    "legal_room": "法定途径接谈室",
    "mediation_room": "调解室",
    "video_terminal": "视频接访终端",
    "kiosk": "自助机",
}

#: The levels of the agency network (server.org.models.SiteLevel).
SITE_LEVEL_LABELS: Mapping[str, str] = {
    "district": "区信访超市",
    "street": "街道代办站",
    "community": "社区代办点",
}

#: A participant's connection quality over a session (media.quality.Grade).
LINK_GRADE_LABELS: Mapping[str, str] = {
    "good": "网络良好",
    "fair": "网络一般",
    "poor": "网络较差",
}

#: How a participant was identified (server.sessions.record.IdentityKind).
IDENTITY_KIND_LABELS: Mapping[str, str] = {
    "staff": "工作人员账号",
    "guest": "经验证的邀请链接",
}

PARTICIPANT_ROLE_LABELS: Mapping[str, str] = {
    ParticipantRole.host: "主持人",
    ParticipantRole.mediator: "调解员",
    ParticipantRole.official: "工作人员",
    ParticipantRole.party: "当事人",
    ParticipantRole.agent: "代办员",
    ParticipantRole.interpreter: "翻译人员",
    ParticipantRole.observer: "旁听",
}

#: A party's side in a mediation (server.sessions.schemas.Side).
SIDE_LABELS: Mapping[str, str] = {"applicant": "申请人", "respondent": "被申请人"}

#: `SessionParticipant.invite_status` (scheduling/service.py, scheduling/reminders.py,
#: signaling/store.py write it).
INVITE_STATUS_LABELS: Mapping[str, str] = {
    "none": "未邀请",
    "queued": "待发送",
    "sent": "已发送",
    "retrying": "重试中",
    "failed": "发送失败",
    "cancelled": "已取消",
    "lobby": "候会中",
    "joined": "已入会",
}

BOOKING_STATUS_LABELS: Mapping[str, str] = {
    BookingStatus.held: "暂留",
    BookingStatus.confirmed: "已确认",
    BookingStatus.rescheduled: "已改期",
    BookingStatus.cancelled: "已取消",
    BookingStatus.expired: "已过期",
}

JOB_KIND_LABELS: Mapping[str, str] = {
    JobKind.invite: "会议邀请",
    JobKind.update: "变更通知",
    JobKind.cancel: "取消通知",
    JobKind.reminder: "会前提醒",
    JobKind.room_open: "开会通知",
}

JOB_STATUS_LABELS: Mapping[str, str] = {
    JobStatus.pending: "待发送",
    JobStatus.sent: "已发送",
    JobStatus.failed: "发送失败",
    JobStatus.cancelled: "已取消",
}

#: `CaseDeadline.status` (server/cases/deadline_clock.py, deadline_sweep.py).
DEADLINE_STATUS_LABELS: Mapping[str, str] = {
    "open": "计时中",
    "overdue": "已超期",
    "paused": "已中止计时",
    "met": "已按时办结",
    "cancelled": "已取消",
    "lapsed": "已过期（未评价）",
}

#: `CaseEvent.type`: the state a case was created in, a transition's name, or one of these.
CASE_EVENT_LABELS: Mapping[str, str] = {
    **CASE_STATE_LABELS,
    **{name: t.label_zh for name, t in TRANSITIONS.items()},
    "repeat_detected": "系统提示：重复信访",
    "claimed": "工作人员认领",
    "review_requested": "申请复查复核",
    "handler_added": "增加承办人",
    "expert_opinion": "专家意见",
    "marked_hard": "列为疑难积案",
    "supervision": "督办",
    "supervision_response": "督办答复",
    "supervision_verdict": "督办评议",
    "batch_assigned": "集中交办",
    "red_card": "红牌警告",
    "agreement_drafted": "起草调解协议书",
    "agreement_effective": "调解协议书生效",
    "agreement_link_sent": "发送调解协议签署链接",
    "deadline_extended": "延长办理期限",
    "deadline_paused": "中止计时",
    "deadline_resumed": "恢复计时",
    "evaluation_link_sent": "已发送评价链接",
    "reception_receipt_sent": "已告知群众事项编号和查询方式",
    "judicial_requested": "已申请司法确认",
    "dispatch_decision": "确定承办单位（智能分派）",
    "deadline_warning": "期限预警",
    "deadline_overdue": "期限已超期",
    "escalated": "三级抄告",
    "evaluation_timeout": "评价超时，记为未评价",
    "session_started": "视频会话开始",
    "session_ended": "视频会话结束",
    "session_no_show": "视频会话当事人未到场",
    "session_outcome": "视频会话结果已记录",
    "session_minutes": "会话笔录已生成",
    # 签发 (server/cases/sign_off.py)
    "reply_drafted": "拟写书面答复，待领导签发",
    "refusal_drafted": "拟不予受理，待领导签发",
    "signed_off": "领导签发",
    "draft_returned": "领导退回修改",
}

#: `PetitionCase.channel`: how the petition came in.
CHANNEL_LABELS: Mapping[str, str] = {
    "window": "来访（窗口）",
    "kiosk": "自助机",
    "qr": "扫码登记",
    "web": "网上信访",
    "video": "视频接访",
    "agent": "代办员代办",
    "letter": "来信",
}

#: `PetitionCase.grade`: 简易/普通/复杂 handling.
GRADE_LABELS: Mapping[str, str] = {
    "simple": "简易办理",
    "normal": "普通办理",
    "complex": "复杂事项",
    "hard": "疑难积案",
}

LABELS: Mapping[str, Mapping[str, str]] = {
    "case_state": CASE_STATE_LABELS,
    "case_state_public": CASE_STATE_PUBLIC_LABELS,
    "case_event": CASE_EVENT_LABELS,
    "deadline_status": DEADLINE_STATUS_LABELS,
    "session_state": SESSION_STATE_LABELS,
    "session_kind": SESSION_KIND_LABELS,
    "session_outcome": SESSION_OUTCOME_LABELS,
    "consent": CONSENT_LABELS,
    "identity_kind": IDENTITY_KIND_LABELS,
    "link_grade": LINK_GRADE_LABELS,
    "participant_role": PARTICIPANT_ROLE_LABELS,
    "side": SIDE_LABELS,
    "invite_status": INVITE_STATUS_LABELS,
    "booking_status": BOOKING_STATUS_LABELS,
    "job_kind": JOB_KIND_LABELS,
    "job_status": JOB_STATUS_LABELS,
    "call_state": {str(k): v for k, v in CALL_STATE_LABELS.items()},
    "channel": CHANNEL_LABELS,
}

#: Every value each table must cover, where the codes are an enum.
ENUMS: Mapping[str, type[enum.StrEnum]] = {
    "case_state": CaseState,
    "case_state_public": CaseState,
    "session_state": SessionState,
    "session_kind": SessionKind,
    "session_outcome": SessionOutcome,
    "participant_role": ParticipantRole,
    "booking_status": BookingStatus,
    "job_kind": JobKind,
    "job_status": JobStatus,
}


def label(table: str, value: object) -> str:
    """The zh-CN msgid for a code; an unknown code is returned as it is (and fails the test)."""
    code = value.value if isinstance(value, enum.Enum) else str(value)
    return LABELS[table].get(code, code)
