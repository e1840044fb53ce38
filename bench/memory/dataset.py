"""The labelled retrieval set, built deterministically and shipped as ``bench/memory/dataset.json``.

200 facts: 10 people × 20 attributes, each written with one template. 100 questions: one paraphrase per
questioned fact, worded to share as few content words with the fact as possible (so lexical matching
alone does poorly). For every questioned fact the corpus also holds two distractors: a *negation*
("Ana does not live in Lisbon.") and an *entity swap* (the same statement about another person).
A hit is the exact fact; recall@5 counts a question as answered when its fact is in the top 5.
"""

from __future__ import annotations

import json
from pathlib import Path

PEOPLE = ["Ana", "Ben", "Chloe", "Dmitri", "Elif", "Farah", "Goran", "Hiro", "Ines", "Jonas"]

# attribute: (fact template, negation template, question template, values for the 10 people)
ATTRIBUTES: dict[str, tuple[str, str, str, list[str]]] = {
    "city": ("{p} lives in {v}.", "{p} does not live in {v}.", "Where is {p}'s home these days?",
             ["Lisbon", "Oslo", "Nairobi", "Kyoto", "Quito", "Tunis", "Perth", "Riga", "Lima", "Graz"]),
    "job": ("{p} works as a {v}.", "{p} does not work as a {v}.", "What does {p} do for a living?",
            ["nurse", "pilot", "carpenter", "chemist", "lawyer", "baker", "plumber", "teacher", "architect", "farmer"]),
    "pet": ("{p} has a dog named {v}.", "{p} has no dog named {v}.", "What is the name of {p}'s puppy?",
            ["Biscuit", "Rex", "Luna", "Pepper", "Milo", "Nala", "Ziggy", "Olive", "Bruno", "Koda"]),
    "food": ("{p}'s favourite food is {v}.", "{p}'s favourite food is not {v}.", "Which dish does {p} enjoy eating most?",
             ["ramen", "paella", "tacos", "lasagne", "curry", "sushi", "goulash", "pho", "falafel", "risotto"]),
    "allergy": ("{p} is allergic to {v}.", "{p} is not allergic to {v}.", "What gives {p} a bad reaction when eaten?",
                ["peanuts", "shellfish", "gluten", "eggs", "soy", "sesame", "milk", "kiwi", "mustard", "celery"]),
    "seat": ("{p} prefers {v} seats on flights.", "{p} does not prefer {v} seats on flights.", "Where does {p} like to sit on a plane?",
             ["window", "aisle", "window", "aisle", "exit-row", "window", "aisle", "front-row", "window", "aisle"]),
    "language": ("{p} speaks {v} fluently.", "{p} does not speak {v}.", "Which tongue can {p} converse in with ease?",
                 ["Portuguese", "Norwegian", "Swahili", "Japanese", "Spanish", "Arabic", "Serbian", "Korean", "Catalan", "German"]),
    "birthday": ("{p} was born in {v}.", "{p} was not born in {v}.", "In which month does {p} celebrate turning a year older?",
                 ["March", "July", "October", "January", "May", "August", "December", "April", "June", "September"]),
    "car": ("{p} drives a {v}.", "{p} does not drive a {v}.", "What vehicle does {p} own?",
            ["Volvo", "Tesla", "Fiat", "Subaru", "Toyota", "Peugeot", "Skoda", "Honda", "Mini", "Audi"]),
    "sport": ("{p} plays {v} every weekend.", "{p} never plays {v}.", "Which game keeps {p} busy on Saturdays?",
              ["tennis", "football", "badminton", "golf", "rugby", "squash", "volleyball", "cricket", "hockey", "basketball"]),
    "drink": ("{p} drinks {v} every morning.", "{p} never drinks {v} in the morning.", "What beverage starts {p}'s day?",
              ["espresso", "green tea", "orange juice", "matcha", "black coffee", "mint tea", "kefir", "cocoa", "chai", "lemon water"]),
    "team": ("{p} supports {v}.", "{p} does not support {v}.", "Which club is {p} a fan of?",
             ["Benfica", "Rosenborg", "Gor Mahia", "Kashima", "Barcelona", "Esperance", "Red Star", "Ulsan", "Girona", "Sturm"]),
    "instrument": ("{p} plays the {v}.", "{p} cannot play the {v}.", "What musical instrument can {p} perform on?",
                   ["cello", "violin", "trumpet", "flute", "piano", "oud", "accordion", "drums", "guitar", "harp"]),
    "hobby": ("{p} collects {v}.", "{p} does not collect {v}.", "What does {p} gather as a pastime?",
              ["stamps", "vinyl records", "coins", "comics", "postcards", "fossils", "seashells", "old maps", "teapots", "keys"]),
    "employer": ("{p} is employed by {v}.", "{p} is not employed by {v}.", "Which company pays {p}'s salary?",
                 ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Wonka", "Tyrell", "Cyberdyne"]),
    "sibling": ("{p}'s sister is called {v}.", "{p} has no sister called {v}.", "What is the name of {p}'s sibling?",
                ["Marta", "Sofia", "Leila", "Nadia", "Paula", "Yasmin", "Vesna", "Aiko", "Carla", "Greta"]),
    "meeting": ("{p}'s weekly team meeting is on {v}.", "{p}'s weekly team meeting is not on {v}.",
                "Which day does {p} have the recurring sync?",
                ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]),
    "code": ("{p} writes software in {v}.", "{p} never writes software in {v}.", "Which programming language does {p} use?",
             ["Rust", "Go", "Python", "Haskell", "Kotlin", "Elixir", "Java", "Swift", "Ruby", "Scala"]),
    "holiday": ("{p} spent the summer holidays in {v}.", "{p} did not spend the summer holidays in {v}.", "Where did {p} go on vacation?",
                ["Crete", "Iceland", "Zanzibar", "Bali", "Patagonia", "Sicily", "Corsica", "Hokkaido", "Madeira", "Tyrol"]),
    "diet": ("{p} follows a {v} diet.", "{p} does not follow a {v} diet.", "What eating plan does {p} stick to?",
             ["vegetarian", "vegan", "keto", "pescatarian", "paleo", "halal", "kosher", "low-sodium", "gluten-free", "Mediterranean"]),
}  # fmt: skip


def build() -> dict[str, object]:
    facts: list[dict[str, str]] = []
    questions: list[dict[str, str]] = []
    distractors: list[dict[str, str]] = []
    for attr, (fact, neg, question, values) in ATTRIBUTES.items():
        for i, person in enumerate(PEOPLE):
            fid = f"{attr}:{person}"
            facts.append({"id": fid, "text": fact.format(p=person, v=values[i])})
            if (i + list(ATTRIBUTES).index(attr)) % 2 == 0:  # every other fact is questioned: 100 questions
                other = PEOPLE[(i + 3) % len(PEOPLE)]
                questions.append({"id": f"q:{fid}", "text": question.format(p=person), "answer": fid})
                distractors.append({"id": f"neg:{fid}", "kind": "negation", "of": fid, "text": neg.format(p=person, v=values[i])})
                distractors.append({"id": f"swap:{fid}", "kind": "entity_swap", "of": fid, "text": fact.format(p=other, v=values[i])})
    return {"facts": facts, "questions": questions, "distractors": distractors}


def load(path: Path | None = None) -> dict[str, list[dict[str, str]]]:
    path = path or Path(__file__).with_name("dataset.json")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


if __name__ == "__main__":
    data = build()
    Path(__file__).with_name("dataset.json").write_text(json.dumps(data, indent=1) + "\n")
    print({k: len(v) for k, v in data.items()})  # type: ignore[arg-type]
