"""The audit page's words: a Chinese label for every action code the code base writes to the
audit log (a test collects the codes from the source and fails on a missing one), and the
object types. Unknown codes are shown as they are (an old entry of a removed feature).

The labels are gettext message ids: web/locale/en/LC_MESSAGES/messages.po has the English of
each (a test fails on a missing one); pass the page's `gettext` to `action_label` and
`object_label` to have them in the reader's language."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from web.labels import CASE_EVENT_LABELS

AUDIT_ACTION_LABELS: Mapping[str, str] = {
    # sign-in and accounts
    "auth.sign_in": "登录",
    "auth.sign_in_failed": "登录失败",
    "auth.sign_in_throttled": "登录被限制（失败过多）",
    "auth.sign_out": "退出登录",
    "auth.session_expired": "登录超时失效",
    "auth.session_ended": "会话被强制下线",
    "auth.permission_denied": "越权访问被拒绝",
    "auth.token_create": "创建 API 令牌",
    "auth.token_revoke": "撤销 API 令牌",
    "auth.token_use": "使用 API 令牌",
    "auth.totp_enrolled": "绑定动态验证码",
    "auth.totp_failed": "动态验证码错误",
    "auth.totp_reset": "重置动态验证码（双因素）",
    "auth.unlocked": "解除登录限制",
    "auth.password_changed": "修改密码",
    "auth.password_change_failed": "修改密码失败（当前密码错误）",
    "role.grant": "授予角色",
    "role.revoke": "收回角色",
    "staff.create": "创建工作人员账号",
    "staff.update": "修改工作人员账号",
    "staff.disable": "停用工作人员账号",
    "staff.enable": "启用工作人员账号",
    "staff.password_reset": "管理员重置密码",
    "deadline_policy.update": "修改办理时限",
    "matter_type.update": "修改事项类型",
    "org.site_add": "新增站点",
    "org.site_update": "修改站点",
    "org.department_add": "新增部门",
    "org.department_update": "修改部门名称",
    "org.resource_add": "新增窗口或调解室",
    "org.resource_active": "停用或启用窗口、调解室",
    "holiday.year_loaded": "导入全年节假日安排",
    "holiday.day_added": "增加节假日或调休日",
    "holiday.day_removed": "删除节假日或调休日",
    "pii.rotate": "个人信息密钥轮换",
    # the audit log itself
    "audit.read": "查阅审计日志",
    "audit.export": "导出审计日志",
    # cases
    "case.create": "登记信访事项",
    "case.batch_assign": "集中交办",
    "case.red_card": "发出红牌",
    "case.view": "查看信访事项",
    "case.petitioner_view": "查看信访人信息",
    "case.export": "导出信访事项",
    "case.import": "导入信访事项",
    "case.add_handler": "增加承办人",
    "case.expert_opinion": "出具专家意见",
    "case.marked_hard": "列为疑难积案",
    "case.claim": "认领事项",
    "case.supervise": "督办",
    "case.supervision_close": "督办办结",
    "case.supervision_respond": "督办答复",
    "case.request_review": "申请复查复核",
    "case.deadline_extend": "延长办理期限",
    "case.deadline_pause": "中止计时",
    "case.deadline_resume": "恢复计时",
    "case.deadline_sweep": "期限巡检",
    "case.evaluate": "满意度评价",
    "case.notice_download": "下载告知书",
    "case.sessions_view": "查看事项的视频会话",
    "case.sign_off": "领导签发",
    "case.return_draft": "领导退回修改",
    "report.draft": "起草评价报告",
    "report.approve": "批准评价报告",
    "dispatch.decide": "确定承办单位（智能分派）",
    "escalation_contact.add": "添加抄告联系人",
    "escalation_contact.remove": "移除抄告联系人",
    # agreements
    "agreement.draft": "起草调解协议书",
    "agreement.sign": "签署调解协议书",
    "agreement.judicial": "记录司法确认申请",
    "agreement.judicial_reminder": "发送司法确认申请提醒",
    "agreement.sign_link_sent": "发送调解协议签署链接",
    "agreement.link_view": "当事人通过签署链接查看调解协议书",
    "agreement.view": "查看调解协议书",
    "agreement.export_pdf": "导出调解协议书 PDF",
    # calls, sessions, recordings
    "queue.answer": "接听连线",
    "queue.call": "发起连线",
    "session.evidence_download": "下载会话证据包",
    "session.minutes_view": "查看会话笔录",
    "session.minutes_save": "保存会话笔录",
    "session.minutes_freeze": "会话笔录定稿",
    "session.minutes_link_sent": "发送笔录确认链接",
    "session.minutes_link_view": "当事人通过链接查看笔录",
    "session.minutes_confirm": "当事人确认笔录",
    "session.minutes_close": "生成会话笔录PDF",
    "session.minutes_pdf": "查看会话笔录PDF",
    "session.evidence_manifest": "查看会话证据清单",
    "session.no_show_marked": "记录当事人未到场",
    "session.outcome_recorded": "记录会话结果",
    "session.record_view": "查看会话记录",
    "recording.play": "调阅录像",
    "recording.fetch": "播放录像文件",
    "recording.fetch_denied": "录像文件调阅被拒绝",
    "recording.tampered": "录像文件校验失败（疑似篡改）",
    "recording.retention_delete": "录像到期删除",
    "composite.retention_delete": "合成录像到期删除",
    "signaling.session.created": "视频会议：创建会话",
    "signaling.token.issued": "视频会议：签发入会凭证",
    "signaling.token.revoked": "视频会议：撤销入会凭证",
    # scheduling
    "schedule.booked": "预约",
    "schedule.cancelled": "取消预约",
    "schedule.rescheduled": "改约",
    "schedule.no_show": "预约未到场",
    "schedule.attended": "预约已到场",
    "schedule.links_issued": "发送入会链接",
    "schedule.availability_set": "设置可预约时间",
    "schedule.exception_added": "添加日程例外",
    "schedule.holiday_set": "设置节假日",
}

#: `object_type` of an entry, in words.
OBJECT_TYPE_LABELS: Mapping[str, str] = {
    "case": "信访事项",
    "staff": "工作人员",
    "api_token": "API 令牌",
    "agreement": "调解协议书",
    "recording": "录像",
    "call_session": "视频会话",
    "schedule_owner": "日程",
    "booking": "预约",
    "site": "站点",
    "action": "权限",
    "escalation_contact": "抄告联系人",
    "report": "评价报告",
    "resource": "窗口或调解室",
}


def _same(text: str) -> str:
    return text


#: The label of a signaling event without its own entry; `%(event)s` is the event's code.
SIGNALING_EVENT = "视频会议事件（%(event)s）"


def action_label(code: str, gettext: Callable[[str], str] = _same) -> str:
    """The label of an audit action code in the language of `gettext` (Chinese without one;
    the code itself when there is no label)."""
    label = AUDIT_ACTION_LABELS.get(code)
    if label is not None:
        return gettext(label)
    family, _, rest = code.partition(".")
    if family == "case" and rest in CASE_EVENT_LABELS:  # case.<transition>, case.<draft event>
        return gettext(CASE_EVENT_LABELS[rest])
    if family == "signaling" and rest:
        return gettext(SIGNALING_EVENT) % {"event": rest}
    return code


def object_label(object_type: str, gettext: Callable[[str], str] = _same) -> str:
    label = OBJECT_TYPE_LABELS.get(object_type)
    return gettext(label) if label is not None else object_type
