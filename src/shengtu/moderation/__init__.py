"""The moderation service (issue 25, item 2): an outside service (Aliyun 内容安全, OpenAI's
moderation API) that checks each prompt after the word lists and before the charge, and
each result picture before it is delivered. Optional: with no provider set nothing here
runs and the worker pays nothing for it."""
