# ruff: noqa: E501 - the table reads best one reason to a line
"""English for the reasons a task fails with (its ``errorMessage``).

A failed task keeps its reason in Chinese, as the spec shows it, and that text is the one
record of why: it is made of our own words (``提交上游失败:…``, ``任务超时:…``,
``内容审核未通过:…``), nested as the worker wraps a provider's words in its own, and
sometimes of an upstream's words quoted inside them. Each of our phrasings is a pattern
here, its groups the parts it quotes; :func:`shengtu.api.i18n.english_reason` matches a
reason against this table (and the envelope's) and translates each quoted part the same
way, so a reason nested three deep comes out whole. What matches nothing (an upstream's own
words) stays as the upstream wrote it.

Patterns match a whole text, and the first that matches wins: the longer form of a reason
comes before its shorter one. Templates start in lower case (a part may be quoted inside
another reason); the reason as a whole is capitalised where it is answered.
``tests/api/test_reasons.py`` finds every reason the code can write and checks that each
comes out with no Chinese left of our own.
"""

from __future__ import annotations

# (Chinese pattern, English). Groups carry the quoted parts.
REASONS: list[tuple[str, str]] = [
    # The worker's own reasons (shengtu.tasks: relay, results, deadlines, worker, service).
    (r"没有可用的上游渠道,任务无法执行", "no upstream channel is available for the task"),
    (
        r"没有可用的上游渠道,任务无法执行\((.+)\)",
        "no upstream channel is available for the task ({0})",
    ),
    (
        r"提交上游失败:(.+)\(已尝试 (\d+) 次\)",
        "sending the task upstream failed: {0} (tried {1} times)",
    ),
    (
        r"提交上游失败:(.+),无法确认上游是否已接受任务;为避免重复生成,任务不再重试",
        "sending the task upstream failed: {0}; whether the upstream took it cannot be known, so it is not sent again (no picture made twice)",
    ),
    (r"提交上游失败:(.+)", "sending the task upstream failed: {0}"),
    (r"查询上游任务失败:(.+)", "asking the upstream about the job failed: {0}"),
    (r"取消上游任务失败:(.+)", "cancelling the upstream job failed: {0}"),
    (r"上游生成失败,未说明原因", "the upstream failed the job without saying why"),
    (r"上游返回的结果不是有效图片:(.*)", "the upstream's result is not a valid picture: {0}"),
    (r"结果图片转存失败:(.+)", "storing the result picture failed: {0}"),
    (r"参考图已不存在: (.+)", "the reference image no longer exists: {0}"),
    (r"参考图下载失败:(.+)", "downloading the reference image failed: {0}"),
    (r"参考图不是有效图片:(.+)", "the reference image is not a valid picture: {0}"),
    (r"用户已取消任务", "cancelled by the user"),
    (r"管理员已取消任务", "cancelled by an operator"),
    (
        r"任务超时:上游在 (\d+) 秒内未完成\(最近一次错误:(.+)\)",
        "timed out: the upstream did not finish within {0} s (last error: {1})",
    ),
    (r"任务超时:上游在 (\d+) 秒内未完成", "timed out: the upstream did not finish within {0} s"),
    (r"\(最近一次错误:(.+)\)", "(last error: {0})"),
    (
        r"任务超时:提交上游的请求在任务时限\((\d+) 秒\)内未得到回答,无法确认上游是否已接受任务;为避免重复生成,任务不再重试",
        "timed out: the upstream did not answer the submit within the task's time limit ({0} s); whether it took the task cannot be known, so it is not sent again (no picture made twice)",
    ),
    (
        r"任务超时:(.+)在任务时限\((\d+) 秒\)内未能下载完成",
        "timed out: {0} could not be downloaded within the task's time limit ({1} s)",
    ),
    (r"任务时限已到,上游仍未回答", "the task's time limit came before the upstream answered"),
    (
        r"受理该任务的上游渠道或密钥已被删除,无法查询结果",
        "the upstream channel or key that took the task was deleted: its result cannot be asked for",
    ),
    (
        r"上游渠道暂不可用\(并发已满或熔断冷却中\),排队等待",
        "the upstream channels are busy or cooling down after failures; waiting in line",
    ),
    (r"内部错误: (\S+)", "internal error: {0}"),
    # What a download is of (shengtu.storage.fetch names it in its messages).
    (r"结果图片", "the result picture"),
    (r"参考图", "the reference image"),
    (r"结果地址", "the result's address"),
    (r"参考图地址", "the reference image's address"),
    # Downloads (shengtu.storage.fetch) and picture checks (shengtu.storage.images).
    (r"下载(.+?)超过时限\((\d+) 秒\)", "downloading {0} took longer than its limit ({1} s)"),
    (
        r"下载(.+?)速度过慢\((\S+) 秒内不足 (\d+) 字节\)",
        "downloading {0} was too slow (under {2} bytes in {1} s)",
    ),
    (r"下载(.+?)失败: HTTP (\d+)", "downloading {0} failed: HTTP {1}"),
    (r"下载(.+?)失败: (\S+)", "downloading {0} failed: {1}"),
    (r"下载(.+)超时", "downloading {0} timed out"),
    (r"下载(.+)中断", "downloading {0} was interrupted"),
    (r"文件为空", "the file is empty"),
    (r"不支持的图片格式 (.+)", "unsupported picture format {0}"),
    (r"未知", "unknown"),
    (
        r"图片尺寸过大\((\d+)×(\d+),最多 ([\d,]+) 像素\)",
        "the picture is too large ({0}×{1}, at most {2} pixels)",
    ),
    (r"图片像素过多,疑似解压炸弹", "the picture has too many pixels (a likely decompression bomb)"),
    (r"内容不是有效的图片", "the content is not a valid picture"),
    # Addresses refused by the SSRF guard (shengtu.netguard); two more are the envelope's.
    (r"图片 URL 不能为空", "the image URL is empty"),
    (r"图片 URL 过长\(最多 (\d+) 个字符\)", "the image URL is too long (at most {0} characters)"),
    (
        r"图片 URL 含有空白或控制字符: (.+)",
        "the image URL holds a space or a control character: {0}",
    ),
    (r"图片 URL 格式错误: (.+)", "the image URL is malformed: {0}"),
    (r"图片 URL 只支持 http 和 https 协议: (.+)", "the image URL must be http or https: {0}"),
    (r"图片 URL 缺少主机名: (.+)", "the image URL has no host name: {0}"),
    (
        r"图片 URL 不能包含用户名或密码: (.+)",
        "the image URL must not hold a user name or password: {0}",
    ),
    (r"图片 URL 主机名无效: (.+)", "the image URL's host name is invalid: {0}"),
    (r"无法解析图片 URL 的主机名: (.+)", "the image URL's host name cannot be resolved: {0}"),
    (r"域名解析繁忙,请稍后再试", "name resolution is busy, please try again later"),
    # Every protocol (shengtu.providers.http and the providers' shared phrasings).
    (r"上游限流\(HTTP 429\)", "the upstream is rate-limiting (HTTP 429)"),
    (r"上游鉴权失败,请检查上游密钥配置", "the upstream refused the key; check the upstream key"),
    (r"上游服务错误\(HTTP (\d+)\)", "upstream server error (HTTP {0})"),
    (r"上游接口超时", "the upstream did not answer in time"),
    (r"无法连接上游接口:(.+)", "cannot reach the upstream: {0}"),
    (r"连接被拒绝或地址不可达", "connection refused or address unreachable"),
    (r"上游断开了连接", "the upstream closed the connection"),
    (r"上游的回答不完整", "the upstream's answer was cut short"),
    (r"上游返回了无法解析的内容", "the upstream answered with something that cannot be parsed"),
    (r"上游返回的内容过大", "the upstream's answer is too large"),
    (r"上游返回未知状态: (.*)", "the upstream answered with an unknown status: {0}"),
    (r"上游接受了任务但未返回任务编号", "the upstream took the task but gave no job id"),
    (
        r"上游报告成功但没有返回图片地址",
        "the upstream reported success but gave no picture address",
    ),
    (r"上游报告完成但没有返回图片", "the upstream reported the job done but gave no picture"),
    (r"上游回答中没有图片", "the upstream's answer has no picture"),
    (r"上游返回的图片数据无法解码", "the picture data the upstream returned cannot be decoded"),
    (
        r"该上游协议没有可查询的任务,结果已丢失",
        "this upstream protocol has no job to ask about: the result is lost",
    ),
    (r"上游账户余额不足", "the upstream account's balance is too low"),
    (
        r"上游拒绝任务: (.+)\(内容不符合上游的使用政策\)",
        "the upstream refused the task: {0} (the content breaks the upstream's usage policy)",
    ),
    (r"\(内容不符合上游的使用政策\)", "(the content breaks the upstream's usage policy)"),
    (r"内容不符合上游的使用政策", "the content breaks the upstream's usage policy"),
    (r"上游拒绝任务\(([^()]*)\): (.+)", "the upstream refused the task ({0}): {1}"),
    (r"上游拒绝任务\((\S+) (.*)\)", "the upstream refused the task ({0} {1})"),
    (r"上游拒绝任务: ?(.+)", "the upstream refused the task: {0}"),
    (r"上游拒绝请求: (.+)", "the upstream refused the request: {0}"),
    (r"上游拒绝请求\(HTTP (\d+)\)", "the upstream refused the request (HTTP {0})"),
    (r"上游查询失败: (.+)", "the upstream's answer about the job is a failure: {0}"),
    (r"上游查询结果缺少 data", "the upstream's answer about the job has no data"),
    (r"上游生成失败", "the upstream failed to make the picture"),
    (r"上游任务已取消", "the upstream job was cancelled"),
    (r"图片生成失败:(.+)", "generation failed: {0}"),
    (r"上游未说明原因", "the upstream gave no reason"),
    (r"未说明原因", "no reason given"),
    (r"未说明", "not given"),
    (r"未知错误", "unknown error"),
    (r"无", "none"),
    # A refusal of the content itself: its own reason (stats and metrics count it apart).
    (r"内容审核未通过:(.+)", "rejected by content moderation: {0}"),
    (r"内容审核未通过", "rejected by content moderation"),
    (r"上游判定提示词含敏感内容", "the upstream found sensitive content in the prompt"),
    (r"上游判定参考图含敏感内容", "the upstream found sensitive content in a reference image"),
    (
        r"上游判定生成的图片含敏感内容",
        "the upstream found sensitive content in the picture it made",
    ),
    (r"上游判定生成内容含敏感信息", "the upstream found sensitive information in what it made"),
    (
        r"上游判定内容含敏感信息\((.+)\)",
        "the upstream found sensitive information in the content ({0})",
    ),
    (
        r"上游判定请求\(提示词或参考图\)含敏感内容",
        "the upstream found sensitive content in the request (the prompt or a reference image)",
    ),
    (
        r"上游判定内容涉嫌侵犯知识产权",
        "the upstream judged the content to infringe intellectual property",
    ),
    (
        r"上游判定生成的图片含不当内容",
        "the upstream found inappropriate content in the picture it made",
    ),
    (
        r"上游判定提示词或参考图含不当内容",
        "the upstream found inappropriate content in the prompt or a reference image",
    ),
    (r"上游判定触发平台策略", "the upstream found that it breaks the platform's policy"),
    (
        r"上游判定内容不符合内容安全策略",
        "the upstream found that the content breaks its content safety policy",
    ),
    (r"上游判定内容不合规\((.*)\)", "the upstream found the content non-compliant ({0})"),
    # Seedream (volcengine_ark): the account and the model.
    (
        r"上游账户已欠费,请充值后启用",
        "the upstream account is in arrears; top it up, then enable the key",
    ),
    (r"上游账单已逾期,请充值后启用", "the upstream bill is overdue; pay it, then enable the key"),
    (r"上游账户状态异常", "the upstream account's status is abnormal"),
    (
        r"已达到上游账户自设的推理限额\(安心体验模式\),请在方舟控制台调整",
        "the upstream account reached the inference limit it set itself (safe experience mode); change it in the Ark console",
    ),
    (
        r"上游模型或接入点不存在或无权访问",
        "the upstream model or endpoint does not exist or may not be used",
    ),
    (r"上游账户不允许直接用模型 ID 调用", "the upstream account may not call a model by its ID"),
    (r"上游接入点已关闭", "the upstream endpoint is closed"),
    (r"上游账户未开通该模型", "the upstream account has not enabled this model"),
    (r"上游账户未开通该模型服务", "the upstream account has not enabled this model's service"),
    (r"上游接口或模型不存在", "the upstream API or model does not exist"),
    (r"上游未能生成图片\(([^()]*)\): (.+)", "the upstream could not make the picture ({0}): {1}"),
    (
        r"上游地址未按方舟协议回答\(HTTP (\d+)\)",
        "the upstream address did not answer as the Ark protocol does (HTTP {0})",
    ),
    # 通义万相 (dashscope).
    (
        r"渠道协议错误:上游只接受异步任务,请求缺少 X-DashScope-Async 头",
        "channel protocol error: the upstream takes only asynchronous tasks and the request lacks the X-DashScope-Async header",
    ),
    (
        r"上游账户已欠费\(Arrearage\),请充值后重新启用该密钥",
        "the upstream account is in arrears (Arrearage); top it up, then enable the key again",
    ),
    (
        r"上游查无此任务\(不存在或已超过 24 小时查询期\)",
        "the upstream has no such job (it never existed or is past its 24-hour query period)",
    ),
    # Gemini: what its promptFeedback and finishReason say.
    (
        r"上游鉴权失败,请检查上游密钥配置\((.*)\)",
        "the upstream refused the key; check the upstream key ({0})",
    ),
    (r"上游账户不可用", "the upstream account cannot be used"),
    (r"上游账户不可用\((.*)\)", "the upstream account cannot be used ({0})"),
    (
        r"上游没有该模型或该模型不能生成图片\(HTTP 404\)",
        "the upstream has no such model, or it cannot make pictures (HTTP 404)",
    ),
    (
        r"上游没有该模型或该模型不能生成图片\(HTTP 404\)\((.*)\)",
        "the upstream has no such model, or it cannot make pictures (HTTP 404) ({0})",
    ),
    (
        r"上游没有返回图片\(finishReason=([^()]*)\):(.+)",
        "the upstream returned no picture (finishReason={0}): {1}",
    ),
    (
        r"上游没有返回图片\(finishReason=([^()]*)\)",
        "the upstream returned no picture (finishReason={0})",
    ),
    (r"提示词触发了上游的安全策略", "the prompt triggered the upstream's safety policy"),
    (r"提示词属于上游禁止生成的内容", "the prompt asks for content the upstream prohibits"),
    (r"提示词含有上游屏蔽的词语", "the prompt holds words the upstream blocks"),
    (r"提示词含有不适合生成图片的内容", "the prompt holds content unfit for a picture"),
    (r"提示词被上游拦截\(上游未说明原因\)", "the upstream blocked the prompt (it gave no reason)"),
    (r"提示词被上游拦截", "the upstream blocked the prompt"),
    (r"生成内容触发了上游的安全策略", "what was made triggered the upstream's safety policy"),
    (r"生成的图片触发了上游的安全策略", "the picture made triggered the upstream's safety policy"),
    (r"生成内容属于上游禁止的内容", "what was made is content the upstream prohibits"),
    (r"生成的图片属于上游禁止的内容", "the picture made is content the upstream prohibits"),
    (r"生成内容含有上游屏蔽的词语", "what was made holds words the upstream blocks"),
    (r"生成内容含有敏感个人信息", "what was made holds sensitive personal information"),
    (r"生成内容可能复现受版权保护的作品", "what was made may reproduce a copyrighted work"),
    (r"生成的图片可能复现受版权保护的作品", "the picture made may reproduce a copyrighted work"),
    # 即梦 (jimeng, Volcengine visual): its business codes and its gateway.
    (
        r"渠道密钥格式错误:即梦\(火山引擎\)密钥须为 AccessKeyID:SecretAccessKey",
        "malformed channel key: a Jimeng (Volcengine) key is AccessKeyID:SecretAccessKey",
    ),
    (
        r"上游任务不存在或已过期\(即梦只保留 12 小时\)",
        "the upstream job does not exist or has expired (Jimeng keeps jobs 12 hours)",
    ),
    (r"上游任务已过期,需重新提交", "the upstream job has expired and must be sent again"),
    (
        r"上游判定输入图片不合规\(Pre Img Risk Not Pass\)",
        "the upstream found the input image non-compliant (Pre Img Risk Not Pass)",
    ),
    (
        r"上游判定提示词含敏感内容\(Text Risk Not Pass\)",
        "the upstream found sensitive content in the prompt (Text Risk Not Pass)",
    ),
    (
        r"上游判定提示词含敏感词或版权词\(Post Text Risk Not Pass\)",
        "the upstream found sensitive or copyrighted words in the prompt (Post Text Risk Not Pass)",
    ),
    (
        r"上游判定生成的图片不合规\(Post Img Risk Not Pass\)",
        "the upstream found the picture it made non-compliant (Post Img Risk Not Pass)",
    ),
    (
        r"上游判定输出文本不合规\(Post Text Risk Not Pass\)",
        "the upstream found its output text non-compliant (Post Text Risk Not Pass)",
    ),
    (
        r"上游判定输入图片涉及版权\(Pre Img Risk Not Pass: Copyright\)",
        "the upstream found the input image touches a copyright (Pre Img Risk Not Pass: Copyright)",
    ),
    (
        r"上游判定生成的图片涉及版权\(Post Img Risk Not Pass: Copyright\)",
        "the upstream found the picture it made touches a copyright (Post Img Risk Not Pass: Copyright)",
    ),
    (r"QPS 超限", "too many requests a second"),
    (r"并发超限", "too many jobs at once"),
    (r"内部错误", "internal error"),
    (r"内部算法错误", "internal algorithm error"),
    (r"审核服务异常", "the moderation service failed"),
    (r"版权词服务异常", "the copyrighted-words service failed"),
    (r"版权图服务异常", "the copyrighted-pictures service failed"),
    (r"上游限流\((\d+) (.+)\)", "the upstream is rate-limiting ({0} {1})"),
    (r"上游服务错误\((\d+) (.+)\)", "upstream server error ({0} {1})"),
    (
        r"上游拒绝访问\((\d+) (.*)\):请确认密钥有效、账号已实名且已开通该模型\(req_key\)的服务",
        "the upstream denied access ({0} {1}): check that the key is valid, the account verified and the model's service (req_key) enabled",
    ),
    (
        r"上游鉴权失败\((.+)\),请检查渠道的 AccessKey 与 SecretKey",
        "the upstream refused the credentials ({0}); check the channel's AccessKey and SecretKey",
    ),
    (
        r"上游拒绝了签名时间\(InvalidTimestamp\),请检查服务器时钟",
        "the upstream refused the signature's time (InvalidTimestamp); check the server's clock",
    ),
    (
        r"上游网关拒绝请求\((\S+) HTTP (\d+)\)",
        "the upstream gateway refused the request ({0} HTTP {1})",
    ),
    (r"无法识别的即梦任务编号: (.+)", "not a Jimeng job id: {0}"),
    # Kling: its codes.
    (
        r"可灵密钥格式错误:应为 AccessKey:SecretKey\(两部分以英文冒号分隔,都不能为空\)",
        "malformed Kling key: it is AccessKey:SecretKey (two non-empty parts, separated by a colon)",
    ),
    (
        r"上游鉴权失败,请检查可灵的 AccessKey 与 SecretKey",
        "the upstream refused the credentials; check Kling's AccessKey and SecretKey",
    ),
    (
        r"上游鉴权失败:Authorization 为空",
        "the upstream refused the credentials: Authorization is empty",
    ),
    (
        r"上游鉴权失败:令牌格式非法,请检查可灵的 AccessKey 与 SecretKey",
        "the upstream refused the credentials: the token is malformed; check Kling's AccessKey and SecretKey",
    ),
    (
        r"上游认为令牌尚未生效,请检查本机时钟",
        "the upstream says the token is not valid yet; check this server's clock",
    ),
    (
        r"上游认为令牌已过期,请检查本机时钟",
        "the upstream says the token has expired; check this server's clock",
    ),
    (r"上游账户异常", "the upstream account is in an abnormal state"),
    (r"上游账户欠费", "the upstream account is in arrears"),
    (r"上游资源包已用完或已过期", "the upstream resource package is used up or expired"),
    (r"上游账户无权使用该接口或模型", "the upstream account may not use this API or model"),
    (r"请求参数非法", "invalid request parameters"),
    (r"参数值非法", "invalid parameter values"),
    (r"上游不支持该请求方法", "the upstream does not take this request method"),
    (
        r"上游找不到请求的资源\(模型或任务\)",
        "the upstream cannot find what was asked for (the model or the job)",
    ),
    (r"上游限流\(请求过快\)", "the upstream is rate-limiting (requests too fast)"),
    (
        r"上游并发已满\(超出资源包限制\)",
        "the upstream's concurrency is full (beyond the resource package's limit)",
    ),
    (
        r"上游 IP 白名单策略拒绝了本机地址",
        "the upstream's IP allow-list refused this server's address",
    ),
    (r"上游服务内部错误", "upstream internal error"),
    (r"上游服务暂不可用", "the upstream service is unavailable for now"),
    (r"上游服务内部超时", "upstream internal timeout"),
    (
        r"可灵图像生成只接受一张参考图,该任务有 (\d+) 张",
        "Kling image generation takes one reference image; this task has {0}",
    ),
    # FLUX (bfl) and the channels' settings.
    (r"上游找不到该任务\(Task not found\)", "the upstream cannot find the job (Task not found)"),
    (r"无法识别的宽高比 (.+)", "an aspect ratio not known: {0}"),
    (r"渠道配置错误:(.+)", "the channel is misconfigured: {0}"),
    (r"BFL 模型名无效: (.+)", "not a BFL model name: {0}"),
    (r"Replicate 模型须为 owner/name 形式: (.+)", "a Replicate model is owner/name: {0}"),
    (
        r"即梦的 size 须为 宽x高\(如 1328x1328\): (.+)",
        "Jimeng's size is WIDTHxHEIGHT (such as 1328x1328): {0}",
    ),
    # Forms of storage.fetch that begin with what they are about (any picture's name):
    # last, so that none takes a message above for its own.
    (r"(.+?)地址重定向次数过多", "the address of {0} redirected too many times"),
    (r"(.+?)不安全: (.+)", "{0} is unsafe: {1}"),
    (r"(.+?)超过 (\d+) 字节上限", "{0} is larger than the limit of {1} bytes"),
]
