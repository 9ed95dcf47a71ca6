"""instructor against GreenThread: a pydantic model extracted through a forced
tool call. Prints the extracted object as JSON; e2e/test_client_libraries.py
judges it. Usage: python instructor_extract.py BASE_URL API_KEY MODEL"""
import sys

import instructor
import openai
import pydantic


class Person(pydantic.BaseModel):
    name: str
    age: int


base, key, model = sys.argv[1:4]
client = instructor.from_openai(openai.OpenAI(base_url=base, api_key=key, max_retries=0), mode=instructor.Mode.TOOLS)
person = client.chat.completions.create(
    model=model,
    response_model=Person,
    messages=[{"role": "user", "content": "Extract the person: Ada Lovelace was 36 years old."}],
    temperature=0,
    max_tokens=80,
    max_retries=0,
)
print(person.model_dump_json())
