"""Every prompt and every fixed sentence the agent says, in Japanese and English.

Answers are spoken, so fixed sentences are short and plain, without lists or markup.
"""

from __future__ import annotations

from retrievers.language import Language

ANSWER_SYSTEM = {
    "en": (
        "You are the voice assistant of {company}. Answer the user's question using ONLY the "
        "context below. If the context does not contain the answer, say that you do not know; never "
        "guess or invent facts, prices, dates or numbers. Answer in English, in one to three short "
        "spoken sentences, with no lists, markdown or URLs.\n\nContext:\n{context}"
    ),
    "ja": (
        "あなたは{company}の音声アシスタントです。以下のコンテキストだけを使ってユーザーの質問に答えて"
        "ください。コンテキストに答えがない場合は分からないと伝え、事実・価格・日付・数字を推測したり"
        "作り出したりしないでください。日本語で、話し言葉として1〜3文で簡潔に答え、箇条書き・記号・URLは"
        "使わないでください。\n\nコンテキスト:\n{context}"
    ),
}

UNAVAILABLE_NOTE = {
    "en": "\n\nThese could not be reached for this question: {what}. Say so in a few words.",
    "ja": "\n\n次の情報源には今回つながりませんでした: {what}。そのことを一言伝えてください。",
}

SMALL_TALK_SYSTEM = {
    "en": (
        "You are the friendly voice assistant of {company}. The user is making small talk. Reply in "
        "English in one short sentence, and offer to help with questions about {company}."
    ),
    "ja": (
        "あなたは{company}の親しみやすい音声アシスタントです。ユーザーは雑談をしています。日本語で一文だけ"
        "短く返事をし、{company}についての質問を手伝えることを伝えてください。"
    ),
}

ROUTER_PROMPT = (
    "Classify the user's last message for a customer-service voice assistant. Reply with one JSON "
    'object only: {{"kind": "lookup" or "small_talk", "category": "product" | "support" | "general" | '
    'null, "query": the question rewritten to stand alone (resolve follow-ups such as "and the '
    'warranty?" using the conversation), "calls": [{{"source": a tool name, "params": its arguments}}] '
    "for the live systems below that the question needs (the knowledge base is always searched; leave "
    "calls empty when no live system is needed)}}.\n\nTools (OpenAI tool schemas):\n{tools}\n\n"
    "Conversation:\n{history}\n\nLast message: {question}"
)

GRADER_PROMPT = (
    "For each numbered document, decide whether it helps answer the question. Reply with one JSON "
    'object only: {{"relevant": [numbers of the helpful documents]}}.\n\nQuestion: {question}\n\n'
    "{documents}"
)

# Fixed sentences -------------------------------------------------------------------------------

NOT_FOUND: dict[Language, str] = {
    "en": "I'm sorry, I couldn't find that in our information, so I can't answer it reliably.",
    "ja": "申し訳ありません。その内容は手元の情報に見つからなかったため、確かなお答えができません。",
}

# Extractive answers say what they are: read from the documents, not composed.
EXTRACTIVE_PREFIX: dict[Language, str] = {
    "en": "Here is what our documents say: ",
    "ja": "資料には次のように書かれています。",
}
FALLBACK_PREFIX: dict[Language, str] = {  # a chat model is configured but failed or was too slow
    "en": "I can't compose an answer right now, so here is what our documents say: ",
    "ja": "ただいま回答を組み立てられないため、資料の該当箇所をそのままお伝えします。",
}

CUT_SHORT: dict[Language, str] = {
    "en": " Sorry, my answer was cut short.",
    "ja": "申し訳ありません、回答が途中で途切れました。",
}

COULD_NOT_FETCH: dict[Language, str] = {
    "en": "I couldn't reach {what} just now, so I can't give you that information. ",
    "ja": "{what}に今つながらなかったため、その情報はお伝えできません。",
}

SOURCE_LABEL: dict[str, dict[Language, str]] = {
    "knowledge_base": {"en": "our knowledge base", "ja": "社内の資料"},
}

SMALL_TALK_REPLIES: dict[str, dict[Language, str]] = {
    "greeting": {
        "en": "Hello! I'm the {company} assistant. How can I help you today?",
        "ja": "こんにちは。{company}のアシスタントです。ご用件をどうぞ。",
    },
    "thanks": {
        "en": "You're welcome! Is there anything else I can help with?",
        "ja": "どういたしまして。ほかにお手伝いできることはありますか。",
    },
    "goodbye": {
        "en": "Thank you for calling {company}. Goodbye!",
        "ja": "{company}へのお問い合わせありがとうございました。失礼いたします。",
    },
    "how_are_you": {
        "en": "I'm doing well, thank you! What can I help you with?",
        "ja": "ありがとうございます、元気です。何かお手伝いできることはありますか。",
    },
    "other": {
        "en": "I'm here to help with questions about {company}. What would you like to know?",
        "ja": "{company}についてのご質問にお答えします。何をお知りになりたいですか。",
    },
}

COMPANY: dict[Language, str] = {"en": "Kumo Audio", "ja": "クモオーディオ"}


def label(source: str, language: Language) -> str:
    """How a source is named in a spoken sentence."""
    return SOURCE_LABEL.get(source, {}).get(language, source)


# The voice front door ---------------------------------------------------------------------------

FILLER: dict[Language, str] = {  # said while slow lookups run, before the answer
    "en": "One moment, let me check. ",
    "ja": "少々お待ちください。",
}

TURN_FAILED: dict[Language, str] = {  # the graph itself failed: apologise, never go silent
    "en": "I'm sorry, something went wrong on my side. Could you ask that again?",
    "ja": "申し訳ありません、こちらで問題が発生しました。もう一度お願いできますか。",
}

DID_NOT_CATCH: dict[Language, str] = {  # speech recognition failed
    "en": "Sorry, I didn't catch that. Could you say it again?",
    "ja": "すみません、うまく聞き取れませんでした。もう一度お願いします。",
}
