//! Text in and out of token ids: the [`tokenizer`], chat templates ([`chat_template`]), streaming
//! UTF-8-correct decoding ([`detokenize`]) and stop strings ([`stop`]).

pub(crate) mod chat_template;
pub(crate) mod detokenize;
pub(crate) mod stop;
pub(crate) mod tokenizer;
