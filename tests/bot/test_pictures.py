"""Your own picture: /imagine image: and strength:, and the "Vary with Imagine" message command."""

from __future__ import annotations

import io

from PIL import Image

from bot.pictures import MAX_PICTURE_BYTES
from tests.bot.conftest import message_has_result, private_refusal
from tests.support.discord_emulator import CALLBACK_MODAL, FakeDiscord
from tests.support.discord_uploads import NITRO_UPLOAD_LIMIT


def png(width: int = 150, height: int = 100, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, "PNG")
    return buf.getvalue()


def _fields(msg: dict) -> dict[str, str]:
    return {f["name"]: f["value"] for f in msg["embeds"][0]["fields"]}


async def test_imagine_from_a_picture(engine, fake: FakeDiscord, start_bot):
    """/imagine image: runs image-to-image from the picture at the allowed size nearest its shape."""
    async with start_bot(engine):
        picture = fake.upload_attachment("fox.png", png(150, 100))
        inter = await fake.slash("imagine", {"prompt": "a red fox", "image": picture})
        msg = await inter.wait_original(message_has_result, timeout=30)
    job = await engine.get_job(1)
    assert job.params.init_image is not None and (job.params.width, job.params.height) == (96, 64)
    assert job.params.strength == engine.settings.vary_strength
    assert _fields(msg)["Made from"] == "your picture (strength 0.6)"


async def test_strength_sets_how_far_from_the_picture(engine, fake: FakeDiscord, start_bot):
    """The strength option is the job's image-to-image strength."""
    async with start_bot(engine):
        picture = fake.upload_attachment("fox.png", png())
        inter = await fake.slash("imagine", {"prompt": "a red fox", "image": picture, "strength": 0.3})
        await inter.wait_original(message_has_result, timeout=30)
    assert (await engine.get_job(1)).params.strength == 0.3


async def test_a_file_that_is_not_a_picture_is_refused(engine, fake: FakeDiscord, start_bot):
    """A text file as the image is refused at once, privately, and nothing is queued."""
    async with start_bot(engine):
        notes = fake.upload_attachment("notes.txt", b"hello")
        inter = await fake.slash("imagine", {"prompt": "a red fox", "image": notes})
        await inter.wait_acked(timeout=3)
    data = inter.callbacks[0].json["data"]
    assert data["flags"] & 64 and "not a picture" in data["content"]
    assert await engine.get_job(1) is None


async def test_an_oversized_picture_is_refused_before_downloading(engine, fake: FakeDiscord, start_bot):
    """A picture over the size limit (a Nitro user may upload it) is refused without being fetched."""
    async with start_bot(engine):
        huge = fake.upload_attachment("huge.png", b"\x89PNG" + b"0" * MAX_PICTURE_BYTES, limit=NITRO_UPLOAD_LIMIT)
        inter = await fake.slash("imagine", {"prompt": "a red fox", "image": huge})
        await inter.wait_acked(timeout=3)
    data = inter.callbacks[0].json["data"]
    assert data["flags"] & 64 and "may be at most 20 MB" in data["content"]


async def test_a_failed_download_says_so(engine, fake: FakeDiscord, start_bot):
    """When Discord's CDN fails, the member is told privately that the picture could not be fetched, the public
    placeholder goes away, and the place is given back."""
    async with start_bot(engine):
        picture = fake.upload_attachment("fox.png", png())
        fake.fail_downloads[int(picture["id"])] = 503
        inter = await fake.slash("imagine", {"prompt": "a red fox", "image": picture})
        text = await private_refusal(inter)
    assert "\u274c" in text and "Discord answered 503" in text and await engine.get_job(1) is None
    assert engine.queue.admit("x", per_user_cap=None, queue_cap=1).held  # nothing kept the place


async def test_a_broken_picture_says_so(engine, fake: FakeDiscord, start_bot):
    """A file named and typed as PNG that Pillow cannot read is answered privately with what is wrong."""
    async with start_bot(engine):
        broken = fake.upload_attachment("fox.png", b"\x89PNG\r\n\x1a\n not really")
        inter = await fake.slash("imagine", {"prompt": "a red fox", "image": broken})
        text = await private_refusal(inter)
    assert "not a picture Pillow can read" in text


async def test_strength_without_a_picture_is_refused(engine, fake: FakeDiscord, start_bot):
    """strength alone makes no sense: it is refused privately, saying to attach a picture."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a red fox", "strength": 0.4})
        await inter.wait_acked(timeout=3)
    assert "attach one with the image option" in inter.callbacks[0].json["data"]["content"]


async def test_vary_with_imagine_opens_a_form_then_runs_from_the_picture(engine, fake: FakeDiscord, start_bot):
    """The message command on a member's picture opens a form (prompt from the message); submitting runs it."""
    async with start_bot(engine):
        picture = fake.upload_attachment("cat.png", png(100, 150))
        posted = fake.post_user_message("my cat on the sofa", attachments=[picture])
        menu = await fake.message_command("Vary with Imagine", int(posted["id"]))
        assert await menu.wait_acked(timeout=3) == CALLBACK_MODAL
        fields = {c["custom_id"]: c for row in menu.modal["components"] for c in row["components"]}
        assert fields["prompt"]["value"] == "my cat on the sofa"
        submit = await fake.submit_modal(menu.modal["custom_id"], {"prompt": "a cat as a lion", "strength": "0.5"})
        await submit.wait_original(message_has_result, timeout=30)
    job = await engine.get_job(1)
    assert job.params.prompt == "a cat as a lion" and job.params.strength == 0.5
    assert (job.params.width, job.params.height) == (64, 96) and job.params.init_image is not None


async def test_a_vary_form_submitted_by_another_member_is_refused(engine, fake: FakeDiscord, start_bot):
    """The Vary form names a member's picture; someone else submitting its id queues nothing."""
    async with start_bot(engine):
        picture = fake.upload_attachment("cat.png", png())
        posted = fake.post_user_message("my cat", attachments=[picture])
        menu = await fake.message_command("Vary with Imagine", int(posted["id"]))
        await menu.wait_acked(timeout=3)
        submit = await fake.submit_modal(menu.modal["custom_id"], {"prompt": "a cat", "strength": ""},
                                         user=fake.add_user("mallory"))
        await submit.wait_acked(timeout=3)
    assert "not opened by you" in submit.callbacks[0].json["data"]["content"]
    assert await engine.get_job(1) is None


async def test_vary_with_imagine_on_a_message_without_a_picture(engine, fake: FakeDiscord, start_bot):
    """The message command on a message holding no picture says so, privately."""
    async with start_bot(engine):
        posted = fake.post_user_message("just words")
        menu = await fake.message_command("Vary with Imagine", int(posted["id"]))
        await menu.wait_acked(timeout=3)
    data = menu.callbacks[0].json["data"]
    assert data["flags"] & 64 and "holds no picture" in data["content"]


async def test_vary_form_after_a_restart_says_it_expired(engine, fake: FakeDiscord, start_bot):
    """A Vary form opened before a restart names a picture the new bot does not know: it says so."""
    async with start_bot(engine):
        picture = fake.upload_attachment("cat.png", png())
        posted = fake.post_user_message("a cat", attachments=[picture])
        menu = await fake.message_command("Vary with Imagine", int(posted["id"]))
        await menu.wait_acked(timeout=3)
    async with start_bot(engine):
        submit = await fake.submit_modal(menu.modal["custom_id"], {"prompt": "a cat", "strength": ""})
        await submit.wait_acked(timeout=3)
    assert "expired" in submit.callbacks[0].json["data"]["content"]


async def test_vary_with_imagine_on_a_result_starts_from_its_words(engine, fake: FakeDiscord, start_bot):
    """On one of the bot's results the form is filled in with the job's own prompt."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a *red* fox"})
        msg = await inter.wait_original(message_has_result, timeout=30)
        menu = await fake.message_command("Vary with Imagine", int(msg["id"]))
        await menu.wait_acked(timeout=3)
    fields = {c["custom_id"]: c for row in menu.modal["components"] for c in row["components"]}
    assert fields["prompt"]["value"] == "a *red* fox"


async def test_a_server_can_switch_members_pictures_off(engine, fake: FakeDiscord, start_bot):
    """/settings moderation pictures:off refuses /imagine image: at once (before any download), privately."""
    async with start_bot(engine):
        settings = await fake.slash("settings moderation", {"pictures": "off"}, permissions=1 << 5)
        assert await settings.wait_acked(timeout=3) == 4
        picture = fake.upload_attachment("fox.png", png())
        inter = await fake.slash("imagine", {"prompt": "a red fox", "image": picture})
        await inter.wait_acked(timeout=3)
    data = inter.callbacks[0].json["data"]
    assert data["flags"] & 64 and "switched off here" in data["content"]
    assert await engine.get_job(1) is None


async def test_pictures_in_nsfw_channels_only(engine, fake: FakeDiscord, start_bot):
    """With pictures:nsfw_only a picture is refused in an ordinary channel and used in one marked NSFW."""
    guild = str(fake.default_guild.id)
    await engine.policy.set_defaults(guild, {"pictures": "nsfw_only"})
    after_dark = fake.add_channel(fake.default_guild, "after-dark", nsfw=True)
    async with start_bot(engine):
        refused = await fake.slash("imagine", {"prompt": "a fox", "image": fake.upload_attachment("a.png", png())})
        await refused.wait_acked(timeout=3)
        used = await fake.slash("imagine", {"prompt": "a fox", "image": fake.upload_attachment("b.png", png())},
                                channel_id=after_dark.id)
        await used.wait_original(message_has_result, timeout=30)
    assert "only in channels marked NSFW" in refused.callbacks[0].json["data"]["content"]
    assert (await engine.get_job(1)).params.init_image is not None


async def test_a_picture_off_discords_cdn_is_not_fetched(engine, fake: FakeDiscord, start_bot):
    """An attachment whose URL names another host is refused privately and never fetched."""
    async with start_bot(engine):
        picture = dict(fake.upload_attachment("fox.png", png()))
        picture["url"] = picture["url"].replace("127.0.0.1", "localhost")
        inter = await fake.slash("imagine", {"prompt": "a red fox", "image": picture})
        text = await private_refusal(inter)
    assert "not on Discord's CDN" in text and await engine.get_job(1) is None


async def test_a_redirect_from_the_cdn_is_not_followed(engine, fake: FakeDiscord, start_bot):
    """A CDN answer that redirects (even to a real picture) is refused, not followed."""
    async with start_bot(engine):
        target = fake.upload_attachment("real.png", png())
        picture = fake.upload_attachment("fox.png", png())
        fake.redirect_downloads[int(picture["id"])] = target["url"]
        inter = await fake.slash("imagine", {"prompt": "a red fox", "image": picture})
        text = await private_refusal(inter)
    assert "Discord answered 302" in text and await engine.get_job(1) is None
